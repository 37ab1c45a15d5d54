"""Parsed rows of an export, in chunks, read in this process or in a helper process.

Reading, parsing and hashing a row costs about as much CPU time as writing it to the database.
For a large file the import therefore reads and parses in a helper process while the calling
process writes, so two cores share the work. Chunks are plain tuples (see
:data:`node.ingest.transform.Row`) and travel through a pipe; the pipe holds at most one chunk,
which bounds memory. Small files are parsed in the calling process: starting a helper costs more
than it saves.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from node.ingest.errors import IngestError
from node.ingest.profile import Profile
from node.ingest.reader import Table, open_table
from node.ingest.report import Reject
from node.ingest.transform import EventInfo, Row, RowCompiler, Transform

CHUNK_ROWS = 25_000
MAX_REJECTS_WHEN_REFUSING = 10_000


@dataclass(slots=True)
class Chunk:
    events: list[EventInfo]
    rows: list[Row]
    rejects: list[Reject]
    rows_read: int


@dataclass(slots=True)
class FileFacts:
    file_name: str
    sha256: str
    total_rows: int | None
    ticket_label: str
    warnings: list[str] = field(default_factory=list)
    rows_read: int = 0


def _open(path: Path, profile: Profile, secret: bytes, source: str) -> tuple[Table, RowCompiler]:
    table = open_table(
        path,
        delimiter=profile.delimiter,
        encoding=profile.encoding,
        decimal=profile.decimal,
        sheet=profile.sheet,
        skip_rows=profile.skip_rows,
    )
    try:
        compiler = RowCompiler(
            profile,
            table.header,
            table.labels,
            secret=secret,
            source=source,
            file_name=table.file_name,
        )
    except BaseException:
        table.close()
        raise
    return table, compiler


def _chunks(
    rows: Iterator[tuple[int, Sequence[str]]],
    transform: Transform,
    compiler: RowCompiler,
    facts: FileFacts,
    *,
    skip_invalid: bool,
) -> Iterator[Chunk]:
    """The parsed rows in chunks. Without ``skip_invalid``, reading stops after
    :data:`MAX_REJECTS_WHEN_REFUSING` rejected rows: the import will be refused anyway."""
    chunk: list[Row] = []
    rejects: list[Reject] = []
    count = 0
    append = chunk.append
    for line, record in rows:
        count += 1
        out = transform(line, record)
        if out.__class__ is Reject:
            rejects.append(out)  # type: ignore[arg-type]
            facts.rows_read = count
            if not skip_invalid and len(rejects) >= MAX_REJECTS_WHEN_REFUSING:
                facts.warnings.append(
                    f"Stopped reading at line {line:,} after {len(rejects):,} rejected rows; "
                    "fix these first."
                )
                break
            continue
        append(out)  # type: ignore[arg-type]
        if len(chunk) >= CHUNK_ROWS:
            yield Chunk(compiler.take_new_events(), chunk, rejects, count)
            chunk, rejects = [], []
            append = chunk.append
    facts.rows_read = count
    yield Chunk(compiler.take_new_events(), chunk, rejects, count)
    facts.warnings[:0] = compiler.warnings()


class ParsedFile:
    """The parsed chunks of one file; use as a context manager, then iterate :meth:`chunks`."""

    def __init__(
        self,
        path: Path,
        profile: Profile,
        *,
        secret: bytes,
        source: str,
        skip_invalid: bool,
        helper_process: bool,
    ) -> None:
        self.path = path
        self.profile = profile
        self.secret = secret
        self.source = source
        self.skip_invalid = skip_invalid
        self.helper_process = helper_process
        self.facts: FileFacts | None = None
        self._table: Table | None = None
        self._compiler: RowCompiler | None = None
        self._process: Any = None
        self._receive: Connection | None = None

    def __enter__(self) -> FileFacts:
        if not self.helper_process:
            self._table, self._compiler = _open(self.path, self.profile, self.secret, self.source)
            self.facts = FileFacts(
                self._table.file_name,
                self._table.sha256,
                self._table.total_rows,
                self._compiler.label("ticket_id"),
            )
            return self.facts
        context = multiprocessing.get_context("spawn")
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_helper,
            args=(send, self.path, self.profile, self.secret, self.source, self.skip_invalid),
            name="publieksdata-import-reader",
            daemon=True,
        )
        self._process.start()
        send.close()
        kind, payload = self._message()
        if kind != "opened":
            raise IngestError(f"internal error: the reader process sent {kind!r} first")
        self.facts = payload
        assert isinstance(self.facts, FileFacts)
        return self.facts

    def __exit__(self, *exc: object) -> None:
        if self._table is not None:
            self._table.close()
        if self._process is not None:
            if self._receive is not None:
                self._receive.close()
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join()

    def chunks(self) -> Iterator[Chunk]:
        assert self.facts is not None
        if self._table is not None and self._compiler is not None:
            yield from _chunks(
                self._table.rows,
                self._compiler.compile(),
                self._compiler,
                self.facts,
                skip_invalid=self.skip_invalid,
            )
            return
        while True:
            kind, payload = self._message()
            if kind == "chunk":
                yield payload
            elif kind == "done":
                self.facts.warnings, self.facts.rows_read = payload
                return
            else:
                raise IngestError(f"internal error: unexpected message {kind!r}")

    def _message(self) -> tuple[str, Any]:
        assert self._receive is not None
        try:
            kind, payload = self._receive.recv()
        except EOFError:
            raise IngestError(
                "the process reading the file stopped unexpectedly (out of memory?); nothing "
                "was imported"
            ) from None
        if kind == "error":
            raise payload
        return str(kind), payload


def _helper(
    send: Connection,
    path: Path,
    profile: Profile,
    secret: bytes,
    source: str,
    skip_invalid: bool,
) -> None:
    """Entry point of the helper process: parse the file and send the chunks."""
    try:
        table, compiler = _open(path, profile, secret, source)
        with table:
            facts = FileFacts(
                table.file_name, table.sha256, table.total_rows, compiler.label("ticket_id")
            )
            send.send(("opened", facts))
            for chunk in _chunks(
                table.rows, compiler.compile(), compiler, facts, skip_invalid=skip_invalid
            ):
                send.send(("chunk", chunk))
            send.send(("done", (facts.warnings, facts.rows_read)))
    except Exception as exc:
        error = exc if isinstance(exc, IngestError) else IngestError(f"reading {path.name} failed: {exc}")
        try:
            send.send(("error", error))
        except OSError:
            pass  # the importing process has gone away; nobody to tell
    finally:
        send.close()
