"""Errors raised by the import: one base class, one subclass per kind of problem.

Every message is meant for the operator who runs the import: it says what is wrong and what to do.
No message ever quotes a customer identifier, a name, an e-mail address, a postcode or a birth date.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node.ingest.report import ImportReport


class IngestError(ValueError):
    """Base class of every error the import raises on purpose (a ValueError: the input is bad)."""


class ProfileError(IngestError):
    """An import profile is missing, malformed or refers to unknown columns or catalogue codes."""


class UnreadableFile(IngestError):
    """The file cannot be read as an export: missing, not CSV or XLSX, undecodable, no header,
    or required columns absent."""


class ImportRefused(IngestError):
    """Rows were rejected and ``skip_invalid`` was not set, so nothing was written.

    ``report`` holds the counts and the list of rejected rows (file, line, column, reason).
    """

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        shown = report.rejected
        super().__init__(
            f"{report.file}: {shown:,} row(s) could not be imported, so nothing was written. "
            "Fix the rows listed in the rejects report, or import again with skip_invalid to "
            "import the valid rows and set the others aside."
        )


class GeoTableError(IngestError):
    """The PC4 → municipality → province table cannot be loaded."""
