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
    """Nothing was written: rows were rejected and ``skip_invalid`` was not set, or (with
    ``skip_invalid``) more than the allowed share of the rows was rejected (``too_many``).

    ``report`` holds the counts and the list of rejected rows (file, line, column, reason).
    """

    def __init__(self, report: ImportReport, *, allowed_share: float | None = None) -> None:
        self.report = report
        self.too_many = allowed_share is not None
        self.allowed_share = allowed_share
        shown = report.rejected
        if allowed_share is None:
            message = (
                f"{report.file}: {shown:,} row(s) could not be imported, so nothing was "
                "written. Fix the rows listed in the rejects report, or import again with "
                "skip_invalid to import the valid rows and set the others aside."
            )
        else:
            share = shown / report.rows_read if report.rows_read else 1.0
            message = (
                f"{report.file}: {shown:,} of {report.rows_read:,} rows ({percent(share)}) were "
                f"rejected, more than the {percent(allowed_share)} allowed, so nothing was "
                "written: so many rejects usually mean a wrong profile, encoding or export. "
                "Look at the rejects report; if these rows may really be left out, allow a "
                "larger share with max_rejected_share in the profile (or "
                "--max-rejected-share)."
            )
        super().__init__(message)


def percent(share: float) -> str:
    """A share as a percentage for people: 5%, 12.5%, 0.3%."""
    value = round(share * 100, 1)
    return f"{value:g}%"


class GeoTableError(IngestError):
    """The PC4 → municipality → province table cannot be loaded."""
