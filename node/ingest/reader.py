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
# Bytes that form a valid UTF-8 character of two to four bytes, and any byte above ASCII.
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")
SINGLE_BYTE_ENCODINGS = ("cp1252", "iso8859-1", "iso8859-15")
# A line the CSV reader is given after the file's last line: if the file ends inside a quoted
# value, the reader swallows it into that value, which tells a cut-off file from a complete one.
_END_OF_FILE = "\uffff\n"
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """How large an XLSX workbook may be, checked before it is parsed (a small, highly compressed
    workbook can unpack to gigabytes and keep an import busy for minutes)."""

    xlsx_max_unpacked_bytes: int = 2048 * MIB  # a full sheet of 1M rows is 1 to 1.5 GiB
    xlsx_max_ratio: int = 100  # real exports unpack to 5 to 20 times their size
    xlsx_max_rows: int = 1_048_576  # the most rows an Excel sheet can have


class CutRecord(list[str]):
    """The values of a record the file ends in the middle of: a quoted value is never closed."""


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
    limits: ReadLimits | None = None,
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
        return _open_xlsx(
            path, decimal=decimal, sheet=sheet, skip_rows=skip_rows, limits=limits or ReadLimits()
        )
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
            if candidate in SINGLE_BYTE_ENCODINGS:
                _refuse_utf8_as_single_byte(path, bad if encoding is None else None)
            return candidate, sha256, newlines
        bad = bad_at
    line, byte = _byte_at(path, bad)
    names = ["Windows-1252" if c == "cp1252" else c.upper() for c in candidates]
    valid = f"neither valid {' nor '.join(names)}" if len(names) > 1 else f"not valid {names[0]}"
    raise UnreadableFile(
        f"{path.name}: line {line} contains a byte (0x{byte}) that is {valid} "
        "text. Save the export as 'CSV UTF-8' (in Excel: Save As, 'CSV UTF-8 (comma "
        "delimited)') and import that file, or set the encoding in the profile."
    )


def _byte_at(path: Path, offset: int) -> tuple[int, str]:
    """(line number, the byte in hex) at an offset of the file."""
    with path.open("rb") as handle:
        handle.seek(offset)
        byte = handle.read(1)
    return _line_of(path, offset), byte.hex()


def _looks_utf8(path: Path) -> bool:
    """Whether the bytes above ASCII are nearly all valid UTF-8 characters: then the text is
    UTF-8, for in Windows-1252 text such byte pairs ('Ã©', 'â‚¬') hardly ever occur."""
    sequences = high = 0
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            found = _UTF8_SEQUENCE.findall(block)
            sequences += len(found)
            high += len(_HIGH_BYTE.findall(block)) - sum(len(f) for f in found)
    return sequences > 0 and sequences > 4 * high


def _refuse_utf8_as_single_byte(path: Path, bad_utf8: int | None) -> None:
    """Refuse to read UTF-8 text as Windows-1252: every accented letter and euro sign would be
    garbled ('€ 40,50' becoming 'â‚¬ 40,50'), stored that way or rejected by the thousand.
    ``bad_utf8`` is the offset of a byte that is not UTF-8, when auto-detection fell back."""
    if not _looks_utf8(path):
        return
    garbled = (
        "Read as Windows-1252, every accented letter and euro sign would be garbled ('€' "
        "would become 'â‚¬'), so nothing was imported."
    )
    if bad_utf8 is None:
        raise UnreadableFile(
            f"{path.name}: this file looks like UTF-8, not Windows-1252 (cp1252) as the "
            f'profile says. {garbled} Set encoding = "auto" (or "utf-8") in the '
            "profile's [format] section and import the file again."
        )
    line, byte = _byte_at(path, bad_utf8)
    raise UnreadableFile(
        f"{path.name}: this file looks like UTF-8, not Windows-1252, but line {line} contains "
        f"a byte (0x{byte}) that is not valid UTF-8 (perhaps text pasted from another file). "
        f"{garbled} Correct that line, or save the export again as 'CSV UTF-8', and import "
        "the file again."
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
        reader = csv.reader(_with_end_marker(handle), delimiter=sep)
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


def _with_end_marker(handle: IO[str]) -> Iterator[str]:
    yield from handle
    yield _END_OF_FILE


def _csv_rows(reader: Any, file_name: str) -> Iterator[tuple[int, Sequence[str]]]:
    """The records after the header, each with the line it starts on. A record the file ends
    in the middle of (a quote never closed) comes as a :class:`CutRecord`."""
    previous = reader.line_num
    end = _END_OF_FILE[0]
    try:
        for record in reader:
            line = previous + 1
            previous = reader.line_num
            if not record or (not record[0] and not any(record)):
                continue
            if end in record[-1]:
                if len(record) == 1 and record[0] == end:
                    return  # the marker itself: the file ended after a complete record
                cut = CutRecord(record)
                cut[-1] = cut[-1].replace(_END_OF_FILE, "")
                yield line, cut
                return
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
        if value.time() == time(0, 0):  # a date cell: Excel stores dates as date-times
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _check_unpacked_size(path: Path, limits: ReadLimits) -> None:
    """Refuse a workbook that unpacks to more than the limits allow, before parsing it: more
    bytes than ``xlsx_max_unpacked_bytes``, or more than ``xlsx_max_ratio`` times its own size
    (real exports unpack to 5 to 20 times their size; a crafted one to hundreds of times), by the
    sizes its parts declare. That is enough: Python's zipfile never unpacks more than a part
    declares (a part that holds more fails its checksum, and the workbook is unreadable)."""
    packed = path.stat().st_size
    by_ratio = packed * limits.xlsx_max_ratio
    limit = min(limits.xlsx_max_unpacked_bytes, by_ratio)
    if by_ratio < limits.xlsx_max_unpacked_bytes:
        too_large = UnreadableFile(
            f"{path.name}: this workbook of {packed / 1e6:,.1f} MB unpacks to more than "
            f"{limits.xlsx_max_ratio:,} times its own size, which no normal export does (they "
            "unpack to at most about 20 times), so it was not read: the file is damaged or made "
            "to overload the import. Export the data as CSV instead; the node's operator can "
            "raise the limit with the setting PUBLIEKSDATA_NODE_IMPORT_XLSX_MAX_RATIO."
        )
    else:
        too_large = UnreadableFile(
            f"{path.name}: this workbook unpacks to more than {limit / 1e6:,.1f} MB, the limit "
            "for an import, so it was not read. Export the data as CSV instead (or in smaller "
            "parts); the node's operator can raise the limit with the setting "
            "PUBLIEKSDATA_NODE_IMPORT_XLSX_MAX_UNPACKED_BYTES."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            if sum(member.file_size for member in archive.infolist()) > limit:
                raise too_large
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise UnreadableFile(
            f"{path.name}: this is not a readable Excel workbook (.xlsx): {exc}"
        ) from None


def _too_many_rows(file_name: str, limit: int) -> UnreadableFile:
    return UnreadableFile(
        f"{file_name}: the sheet has more than {limit:,} rows, the limit for an import, so "
        "nothing was imported. Export the data in smaller parts; the node's operator can raise "
        "the limit with the setting PUBLIEKSDATA_NODE_IMPORT_XLSX_MAX_ROWS."
    )


def _open_xlsx(
    path: Path, *, decimal: str, sheet: str | None, skip_rows: int, limits: ReadLimits
) -> Table:
    import openpyxl
    from openpyxl.utils import get_column_letter

    _check_unpacked_size(path, limits)
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
        declared_rows = worksheet.max_row
        if isinstance(declared_rows, int) and declared_rows > limits.xlsx_max_rows:
            raise _too_many_rows(path.name, limits.xlsx_max_rows)
        rows = _xlsx_rows(worksheet, decimal, path.name, limits.xlsx_max_rows)
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
    width = len(header)
    data_rows = (_fit(v, width) for v in rows if any(v[1]))
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


def _fit(row: tuple[int, list[str]], width: int) -> tuple[int, list[str]]:
    """A sheet row as wide as the header: a sheet leaves out trailing empty cells, or has empty
    cells right of the last named column; a CSV row has neither."""
    number, values = row
    if len(values) < width:
        return number, values + [""] * (width - len(values))
    if len(values) > width and not any(values[width:]):
        return number, values[:width]
    return number, values


def _xlsx_rows(
    worksheet: Any, decimal: str, file_name: str, max_rows: int
) -> Iterator[tuple[int, list[str]]]:
    number = 0
    try:
        for number, values in enumerate(worksheet.iter_rows(values_only=True), start=1):
            if number > max_rows:
                raise _too_many_rows(file_name, max_rows)
            yield number, [cell_text(v, decimal) for v in values]
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise UnreadableFile(
            f"{file_name}: the workbook is damaged after row {number} ({exc}); open it in Excel "
            "and save it again, or export the data as CSV"
        ) from None
