"""Parsed rows of an export, in chunks, read in this process or in a helper process.

Reading, parsing and hashing a row costs about as much CPU time as writing it to the database.
For a large file the import therefore reads and parses in a helper process (``python -m
node.ingest.stream``) while the calling process writes, so two cores share the work. Chunks are
plain tuples (see :data:`node.ingest.transform.Row`) that travel pickled through a pipe; a
writer blocks until the other side reads, so at most about two chunks are in memory. Small files
are parsed in the calling process: starting a helper costs more than it saves.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from node.ingest.errors import IngestError
from node.ingest.events import EventInfo
from node.ingest.persons import Facts, PersonBook
from node.ingest.profile import Profile
from node.ingest.reader import ReadLimits, Table, open_table
from node.ingest.report import Reject
from node.ingest.transform import Row, RowCompiler, Transform

CHUNK_ROWS = 25_000
MAX_REJECTS_WHEN_REFUSING = 10_000


@dataclass(slots=True)
class Chunk:
    events: list[EventInfo]  # first seen in this chunk
    persons: list[Facts]  # first seen in this chunk, with what the file says about them so far
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
    persons: list[Facts] = field(default_factory=list)  # at the end: every person's final facts
    birth_dates_implausible: int = 0
    # At the end, with sector pseudonymisation on: local pseudonym -> normalised identifier.
    sector_ids: dict[str, str] | None = None


def _open(
    path: Path, profile: Profile, secret: bytes, source: str, limits: ReadLimits, sector: bool
) -> tuple[Table, RowCompiler]:
    table = open_table(
        path,
        delimiter=profile.delimiter,
        encoding=profile.encoding,
        decimal=profile.decimal,
        sheet=profile.sheet,
        skip_rows=profile.skip_rows,
        limits=limits,
    )
    try:
        compiler = RowCompiler(
            profile,
            table.header,
            table.labels,
            secret=secret,
            source=source,
            file_name=table.file_name,
            separator=table.delimiter,
            sector=sector,
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
    book = PersonBook()
    events: list[EventInfo] = []

    def finished(rows: list[Row], rejects: list[Reject]) -> Chunk:
        new_events = compiler.take_new_events()
        events.extend(new_events)
        return Chunk(new_events, book.observe(rows, events), rows, rejects, count)

    rejected = 0
    for line, record in rows:
        count += 1
        out = transform(line, record)
        if out.__class__ is Reject:
            rejects.append(out)
            rejected += 1
            if not skip_invalid and rejected >= MAX_REJECTS_WHEN_REFUSING:
                facts.warnings.append(
                    f"Stopped reading at line {line:,} after {rejected:,} rejected rows; "
                    "fix these first."
                )
                break
            continue
        append(out)  # type: ignore[arg-type]
        if len(chunk) >= CHUNK_ROWS:
            yield finished(chunk, rejects)
            chunk, rejects = [], []
            append = chunk.append
    facts.rows_read = count
    yield finished(chunk, rejects)
    facts.warnings[:0] = compiler.warnings()
    facts.persons = book.all_facts()
    facts.birth_dates_implausible = compiler.values.stats["birth_implausible"]
    facts.sector_ids = compiler.sector_ids


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
        limits: ReadLimits | None = None,
        sector: bool = False,
    ) -> None:
        self.job = (path, profile, secret, source, skip_invalid, limits or ReadLimits(), sector)
        self.helper_process = helper_process
        self.facts: FileFacts | None = None
        self._table: Table | None = None
        self._compiler: RowCompiler | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FileFacts:
        path, profile, secret, source, _, limits, sector = self.job
        if not self.helper_process:
            self._table, self._compiler = _open(path, profile, secret, source, limits, sector)
            self.facts = FileFacts(
                self._table.file_name,
                self._table.sha256,
                self._table.total_rows,
                self._compiler.label("ticket_id"),
            )
            return self.facts
        # A fresh interpreter running this module (not multiprocessing's "spawn", which
        # re-imports the caller's __main__ script). The job, secret included, goes through the
        # pipe, never through the command line or the environment.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self._process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            assert self._process.stdin is not None
            with contextlib.suppress(OSError):  # if the helper died, _receive says so
                _send(self._process.stdin, self.job)
                self._process.stdin.close()
            kind, payload = self._receive()
            if kind != "opened" or not isinstance(payload, FileFacts):
                raise IngestError(f"internal error: the reader process sent {kind!r} first")
        except BaseException:
            self.close()
            raise
        self.facts = payload
        return self.facts

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file, or stop the helper process (closing the pipe first, so that a
        helper blocked on writing gets a broken pipe and ends)."""
        if self._table is not None:
            self._table.close()
            self._table = None
        process, self._process = self._process, None
        if process is not None:
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def chunks(self) -> Iterator[Chunk]:
        assert self.facts is not None
        if self._table is not None and self._compiler is not None:
            yield from _chunks(
                self._table.rows,
                self._compiler.compile(),
                self._compiler,
                self.facts,
                skip_invalid=self.job[4],
            )
            return
        while True:
            kind, payload = self._receive()
            if kind == "chunk":
                yield payload
            elif kind == "done":
                (
                    self.facts.warnings,
                    self.facts.rows_read,
                    self.facts.persons,
                    self.facts.birth_dates_implausible,
                    self.facts.sector_ids,
                ) = payload
                return
            else:
                raise IngestError(f"internal error: unexpected message {kind!r}")

    def _receive(self) -> tuple[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        try:
            kind, payload = _recv(self._process.stdout)
        except EOFError:
            raise IngestError(
                "the process reading the file stopped unexpectedly (out of memory?); nothing "
                "was imported"
            ) from None
        if kind == "error":
            raise payload
        return str(kind), payload


def _send(stream: IO[bytes], message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(8, "little"))
    stream.write(data)
    stream.flush()


def _recv(stream: IO[bytes]) -> Any:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError
    size = int.from_bytes(header, "little")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    # Only ever our own helper process on the other end of this pipe.
    return pickle.loads(data)  # noqa: S301


def _helper() -> None:
    """Entry point of the helper process: read the job from stdin, send chunks to stdout."""
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the message pipe
    try:
        path, profile, secret, source, skip_invalid, limits, sector = _recv(sys.stdin.buffer)
        table, compiler = _open(path, profile, secret, source, limits, sector)
        with table:
            facts = FileFacts(
                table.file_name, table.sha256, table.total_rows, compiler.label("ticket_id")
            )
            _send(out, ("opened", facts))
            for chunk in _chunks(
                table.rows, compiler.compile(), compiler, facts, skip_invalid=skip_invalid
            ):
                _send(out, ("chunk", chunk))
            done = (
                facts.warnings,
                facts.rows_read,
                facts.persons,
                facts.birth_dates_implausible,
                facts.sector_ids,
            )
            _send(out, ("done", done))
    except BrokenPipeError:
        pass  # the importing process has gone away; nobody to tell
    except Exception as exc:
        error = exc if isinstance(exc, IngestError) else IngestError(f"reading failed: {exc}")
        with contextlib.suppress(OSError):
            _send(out, ("error", error))


if __name__ == "__main__":
    # Run the helper from the imported module, so that pickled classes carry their real module
    # name (node.ingest.stream.Chunk), not __main__.
    from node.ingest import stream

    stream._helper()
