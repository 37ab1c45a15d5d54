"""Matching a profile's column names to the header of one file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from node.ingest.errors import UnreadableFile
from node.ingest.profile import Profile

REQUIRED = ("ticket_id", "event_start")


@dataclass(slots=True)
class Columns:
    """Where each mapped field is in the file's records, and how to name that column."""

    labels: list[str]
    index: dict[str, int] = field(default_factory=dict)
    customer: tuple[int, ...] = ()
    sector: int | None = None  # the sector pseudonym's identifier column, if the file has it
    notes: list[str] = field(default_factory=list)

    def label(self, field_name: str) -> str:
        return self.labels[self.index[field_name]]


def _normal(name: str) -> str:
    return " ".join(name.split()).casefold()


def resolve_columns(
    profile: Profile, header: Sequence[str], labels: Sequence[str], file_name: str
) -> Columns:
    """Find the profile's columns in ``header`` (ignoring case and extra spaces).

    A missing required column is an :class:`UnreadableFile` error that lists what the file does
    have; a missing optional column is a note (the field is then treated as absent)."""
    positions: dict[str, list[int]] = {}
    for number, name in enumerate(header):
        positions.setdefault(_normal(name), []).append(number)

    def find(column: str) -> int | None:
        found = positions.get(_normal(column))
        if not found:
            return None
        if len(found) > 1:
            raise UnreadableFile(
                f"{file_name}: the column {column!r} appears {len(found)} times in the header; "
                "rename or remove the extra ones"
            )
        return found[0]

    columns = Columns(labels=list(labels))
    missing: list[str] = []
    absent: list[str] = []
    for name, column in profile.columns.items():
        position = find(column)
        if position is not None:
            columns.index[name] = position
        elif name in REQUIRED:
            missing.append(f"{column!r} ({name})")
        else:
            absent.append(f"{column!r} ({name})")
    customer = [(column, find(column)) for column in profile.customer]
    columns.customer = tuple(position for _, position in customer if position is not None)
    if profile.sector_identifier is not None:
        columns.sector = find(profile.sector_identifier)
    else:
        columns.sector = next(
            (p for c, p in customer if p is not None and "mail" in _normal(c)), None
        )
    if customer and not columns.customer and profile.missing_customer == "reject":
        missing.append(" or ".join(repr(c) for c in profile.customer) + " (customer)")
    else:
        absent += [f"{column!r} (customer)" for column, position in customer if position is None]
    if missing:
        found = ", ".join(repr(h) for h in header if h) or "none"
        raise UnreadableFile(
            f"{file_name}: required column(s) missing: {', '.join(missing)}. The file has these "
            f"columns: {found}. Check that you chose the right profile (this is "
            f"{profile.name!r}) or adjust the profile's [columns]."
        )
    if absent:
        columns.notes.append(
            "The profile maps these columns, but the file does not have them, so they were "
            f"skipped: {', '.join(absent)}."
        )
    if "artform" not in columns.index and "artform" not in profile.defaults:
        columns.notes.append(
            "The file has no artform column and no default artform was given, so every event's "
            "artform is 'unknown'. Give one with a default, e.g. artform=theatre."
        )
    return columns
