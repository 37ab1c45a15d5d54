"""What an import reports back: counts, rejected rows and warnings, and the rejects CSV file."""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REJECTS_HEADER = ("file", "line", "column", "reason")


@dataclass(frozen=True, slots=True)
class Reject:
    """One rejected row: where it is and why. Never the value of an identifying column."""

    file: str
    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}, line {self.line}"
        if self.column:
            where += f", column '{self.column}'"
        return f"{where}: {self.reason}"


@dataclass(slots=True)
class ImportReport:
    """The outcome of one import.

    ``rows_read`` counts the data rows read from the file. Every row read is counted once in
    ``inserted`` (a ticket new to the database), ``updated`` (a known ticket whose details
    changed, e.g. it was refunded), ``unchanged`` or ``rejected``. When the import is refused
    (rejects without ``skip_invalid``) the first three are 0: nothing was written.
    """

    file: str
    profile: str
    source: str
    file_sha256: str = ""
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejects: list[Reject] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    batch_id: int | None = None
    nothing_changed: bool = False
    birth_dates_implausible: int = 0  # age band unknown: born before 1900 or after the event
    events_added: int = 0
    persons_added: int = 0
    sector_values: int = 0  # (person, year) sector pseudonyms added (key holders enrolled)
    rejects_file: Path | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        """A short, human-readable account of the import."""
        if self.nothing_changed and not self.rejected:
            return (
                f"{self.file}: {self.rows_read:,} rows read; nothing changed "
                "(every ticket was already in the database with the same details)."
            )
        parts = [
            f"{self.file}: {self.rows_read:,} rows read",
            f"{self.inserted:,} new",
            f"{self.updated:,} updated",
            f"{self.unchanged:,} unchanged",
            f"{self.rejected:,} rejected",
        ]
        text = ", ".join(parts) + "."
        if self.rejects_file is not None:
            text += f" Rejected rows are listed in {self.rejects_file}."
        return text


def default_rejects_path(data_file: Path) -> Path:
    """Where the rejects report goes when the caller does not say: next to the data file."""
    return data_file.with_name(f"{data_file.stem}.rejects.csv")


def write_rejects(path: Path, rejects: Iterable[Reject]) -> None:
    """Write the rejects report (``file;line;column;reason``, UTF-8 with BOM so that Excel shows
    accented characters correctly). Written to a temporary file first, then moved into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".rejects-", suffix=".csv", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle, delimiter=";", lineterminator="\r\n")
            writer.writerow(REJECTS_HEADER)
            for reject in rejects:
                writer.writerow((reject.file, reject.line, reject.column, reject.reason))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
