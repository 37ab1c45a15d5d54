"""Reading an export file as a stream of rows: CSV (any common delimiter and encoding) or XLSX.

Before a single row is read, a first pass over the raw bytes computes the file's SHA-256, counts
its lines (for progress) and proves that the whole file decodes, so an encoding problem on the
last line is reported before anything is written. Rows are then streamed, each with the line
number the operator sees in a text editor (for XLSX: the spreadsheet row), also when a quoted value
spans several lines.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any

from node.ingest.errors import UnreadableFile

BLOCK = 1 << 20
DELIMITER_CANDIDATES = (";", ",", "\t")
_QUOTED = re.compile(r'"[^"]*"')
_DELIMITER_NAMES = {";": "';'", ",": "','", "\t": "tab", "|": "'|'"}


@dataclass(slots=True)
class Table:
    """An open export: its header, how to label each column, and its rows as (line, values)."""

    file_name: str
    kind: str
    header: list[str]
    labels: list[str]
    sha256: str
    total_rows: int | None
    rows: Iterator[tuple[int, Sequence[str]]]
    encoding: str | None = None
    delimiter: str | None = None
    _handle: IO[Any] | None = field(default=None, repr=False)
    _workbook: Any = field(default=None, repr=False)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._workbook is not None:
            self._workbook.close()

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_table(
    path: Path,
    *,
    delimiter: str | None = None,
    encoding: str | None = None,
    decimal: str = ",",
    sheet: str | None = None,
    skip_rows: int = 0,
) -> Table:
    """Open a CSV or XLSX export; ``None`` for delimiter or encoding means detect it."""
    if not path.exists():
        raise UnreadableFile(f"{path}: file not found")
    if path.is_dir():
        raise UnreadableFile(f"{path}: this is a folder, not an export file")
    try:
        with path.open("rb") as handle:
            magic = handle.read(8)
    except OSError as exc:
        raise UnreadableFile(f"{path}: cannot open the file ({exc.strerror})") from None
    if not magic:
        raise UnreadableFile(f"{path.name}: the file is empty")
    if magic.startswith(b"PK\x03\x04"):
        return _open_xlsx(path, decimal=decimal, sheet=sheet, skip_rows=skip_rows)
    if magic.startswith(b"\xd0\xcf\x11\xe0"):
        raise UnreadableFile(
            f"{path.name}: this is an old Excel workbook (.xls); open it in Excel and save it "
            "as 'Excel Workbook (.xlsx)' or 'CSV UTF-8', then import that file"
        )
    if magic.startswith(b"%PDF"):
        raise UnreadableFile(f"{path.name}: this is a PDF; export the data as CSV or XLSX")
    return _open_csv(path, delimiter=delimiter, encoding=encoding, skip_rows=skip_rows)


# --- CSV -------------------------------------------------------------------------------------


def _scan(path: Path, encoding: str) -> tuple[str, int, int | None]:
    """One pass over the bytes: (sha256, number of newlines, offset of the first byte that does
    not decode in ``encoding`` or None)."""
    digest = hashlib.sha256()
    newlines = 0
    offset = 0
    bad: int | None = None
    decoder = codecs.getincrementaldecoder(encoding)()
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            newlines += block.count(b"\n")
            if bad is None:
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    bad = offset + exc.start
            offset += len(block)
    if bad is None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            bad = offset
    return digest.hexdigest(), newlines, bad


def _line_of(path: Path, offset: int) -> int:
    with path.open("rb") as handle:
        return handle.read(offset).count(b"\n") + 1


def _detect_encoding(path: Path, encoding: str | None) -> tuple[str, str, int]:
    with path.open("rb") as handle:
        head = handle.read(4)
    if encoding is None:
        if head.startswith(codecs.BOM_UTF8):
            candidates = ["utf-8-sig"]
        elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            candidates = ["utf-16"]
        else:
            candidates = ["utf-8", "cp1252"]
    else:
        candidates = ["utf-8-sig" if encoding == "utf-8" else encoding]
    bad = 0
    for candidate in candidates:
        sha256, newlines, bad_at = _scan(path, candidate)
        if bad_at is None:
            return candidate, sha256, newlines
        bad = bad_at
    line = _line_of(path, bad)
    with path.open("rb") as handle:
        handle.seek(bad)
        byte = handle.read(1)
    names = ["Windows-1252" if c == "cp1252" else c.upper() for c in candidates]
    valid = f"neither valid {' nor '.join(names)}" if len(names) > 1 else f"not valid {names[0]}"
    raise UnreadableFile(
        f"{path.name}: line {line} contains a byte (0x{byte.hex()}) that is {valid} "
        "text. Save the export as 'CSV UTF-8' (in Excel: Save As, 'CSV UTF-8 (comma "
        "delimited)') and import that file, or set the encoding in the profile."
    )


def _detect_delimiter(line: str, file_name: str) -> str:
    bare = _QUOTED.sub("", line)
    counts = {d: bare.count(d) for d in DELIMITER_CANDIDATES}
    best = max(DELIMITER_CANDIDATES, key=lambda d: counts[d])  # ties go to ';', then ','
    if counts[best] == 0:
        raise UnreadableFile(
            f"{file_name}: cannot tell which character separates the columns in the header "
            "line (no ';', ',' or tab found). Is this a CSV export? If it uses another "
            "separator, set delimiter in the profile."
        )
    return best


def _open_csv(path: Path, *, delimiter: str | None, encoding: str | None, skip_rows: int) -> Table:
    codec, sha256, newlines = _detect_encoding(path, encoding)
    handle = path.open("r", encoding=codec, newline="", buffering=BLOCK)
    try:
        header_line = ""
        for number, text in enumerate(handle):
            if number >= skip_rows and text.strip():
                header_line = text
                break
        if not header_line:
            raise UnreadableFile(f"{path.name}: the file has no header line with column names")
        sep = delimiter or _detect_delimiter(header_line, path.name)
        handle.seek(0)
        reader = csv.reader(handle, delimiter=sep)
        header: list[str] = []
        try:
            for number, record in enumerate(reader):
                if number >= skip_rows and any(cell.strip() for cell in record):
                    header = [" ".join(cell.split()) for cell in record]
                    break
        except csv.Error as exc:
            raise UnreadableFile(f"{path.name}: line {reader.line_num}: {exc}") from None
        labels = [name or f"column {i + 1}" for i, name in enumerate(header)]
        total = max(newlines - reader.line_num, 0) or None
        rows = _csv_rows(reader, path.name)
    except BaseException:
        handle.close()
        raise
    return Table(
        file_name=path.name,
        kind="csv",
        header=header,
        labels=labels,
        sha256=sha256,
        total_rows=total,
        rows=rows,
        encoding=codec,
        delimiter=_DELIMITER_NAMES.get(sep, repr(sep)),
        _handle=handle,
    )


def _csv_rows(reader: Any, file_name: str) -> Iterator[tuple[int, Sequence[str]]]:
    previous = reader.line_num
    try:
        for record in reader:
            line = previous + 1
            previous = reader.line_num
            if not record or (not record[0] and not any(record)):
                continue
            yield line, record
    except csv.Error as exc:
        raise UnreadableFile(
            f'{file_name}: line {previous + 1}: {exc}. A value probably opens a quote (") '
            "that is never closed."
        ) from None


# --- XLSX ------------------------------------------------------------------------------------


def cell_text(value: object, decimal: str) -> str:
    """An XLSX cell as the text a CSV export would hold: numbers with the profile's decimal
    separator, dates and times in ISO 8601 (which the import always understands)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        text = f"{value:.6f}".rstrip("0").rstrip(".")
        return text.replace(".", decimal)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _open_xlsx(path: Path, *, decimal: str, sheet: str | None, skip_rows: int) -> Table:
    import openpyxl
    from openpyxl.utils import get_column_letter

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    try:
        with warnings.catch_warnings():
            # openpyxl warns about workbook features it ignores (styles, extensions); they do
            # not affect the cell values read here.
            warnings.simplefilter("ignore", UserWarning)
            workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise UnreadableFile(
            f"{path.name}: this is not a readable Excel workbook (.xlsx): {exc}"
        ) from None
    try:
        if sheet is None:
            worksheet = workbook.worksheets[0]
        elif sheet in workbook.sheetnames:
            worksheet = workbook[sheet]
        else:
            raise UnreadableFile(
                f"{path.name}: the workbook has no sheet called {sheet!r}; "
                f"its sheets are {', '.join(map(repr, workbook.sheetnames))}"
            )
        rows = _xlsx_rows(worksheet, decimal, path.name)
        header: list[str] = []
        header_row = 0
        for number, values in rows:
            if number > skip_rows and any(v.strip() for v in values):
                header = [" ".join(v.split()) for v in values]
                header_row = number
                break
        if not header:
            raise UnreadableFile(f"{path.name}: the sheet has no header row with column names")
        while header and not header[-1]:
            header.pop()
        labels = [
            f"{get_column_letter(i + 1)} ({name})" if name else get_column_letter(i + 1)
            for i, name in enumerate(header)
        ]
        max_row = worksheet.max_row
        total = max_row - header_row if isinstance(max_row, int) and max_row > header_row else None
    except BaseException:
        workbook.close()
        raise
    data_rows = ((n, v) for n, v in rows if any(v))
    return Table(
        file_name=path.name,
        kind="xlsx",
        header=header,
        labels=labels,
        sha256=digest.hexdigest(),
        total_rows=total,
        rows=data_rows,
        _workbook=workbook,
    )


def _xlsx_rows(worksheet: Any, decimal: str, file_name: str) -> Iterator[tuple[int, list[str]]]:
    number = 0
    try:
        for number, values in enumerate(worksheet.iter_rows(values_only=True), start=1):
            yield number, [cell_text(v, decimal) for v in values]
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise UnreadableFile(
            f"{file_name}: the workbook is damaged after row {number} ({exc}); open it in Excel "
            "and save it again, or export the data as CSV"
        ) from None
