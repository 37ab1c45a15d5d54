"""Import profiles: declarative TOML files that describe one ticketing system's export.

A profile says how the file is written (delimiter, encoding, decimal comma or point, date
formats), which source column holds which canonical field, how source values translate to
catalogue codes, and which constant values to use for fields the export lacks. Profiles ship with
the node (``generic``, ``ticketmatic``, ``eventbrite``) or are written by the operator; both are
validated strictly, so a typo is reported when the profile is loaded, not halfway an import.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from node.ingest import profile_schema
from node.ingest.errors import ProfileError
from node.ingest.fields import FALSE_WORDS, FIELDS, TRUE_WORDS, Kind
from node.ingest.profile_schema import (
    DEFAULT_MAX_REJECTED_SHARE,
    ISO,
    NAME_PATTERN,
    Invalid,
    MappedValue,
)

BUILTIN_PACKAGE = "node.ingest"
BUILTIN_DIR = "profiles"

__all__ = ["MappedValue", "Profile", "ProfileError", "list_builtin_profiles", "load_profile"]


@dataclass(frozen=True, slots=True)
class Profile:
    """A validated import profile. Build one with :func:`load_profile` or :func:`parse_profile`."""

    name: str
    description: str
    origin: str
    columns: Mapping[str, str]
    customer: tuple[str, ...] = ()
    values: Mapping[str, Mapping[str, MappedValue]] = field(default_factory=dict)
    defaults: Mapping[str, MappedValue | int] = field(default_factory=dict)
    delimiter: str | None = None
    encoding: str | None = None
    decimal: str = ","
    price_unit: str = "euros"
    date_formats: tuple[str, ...] = ("%d-%m-%Y", ISO)
    time_formats: tuple[str, ...] = ("%H:%M", "%H:%M:%S", ISO)
    sheet: str | None = None
    skip_rows: int = 0
    missing_customer: str = "reject"
    max_rejected_share: float = DEFAULT_MAX_REJECTED_SHARE
    # The column whose normalised value feeds the sector pseudonym (default: the customer
    # column whose name mentions "mail"), and what kind of identifier it holds.
    sector_identifier: str | None = None
    sector_kind: str = "email"

    def with_defaults(self, extra: Mapping[str, str] | None) -> Profile:
        """This profile with the operator's ``--default field=value`` options added."""
        if not extra:
            return self
        merged = dict(self.defaults)
        for key, raw in extra.items():
            try:
                merged[key] = profile_schema.default_value(key, raw, self.values, "--default")
            except Invalid as exc:
                raise ProfileError(str(exc)) from None
        return dataclasses.replace(self, defaults=merged)

    def map_value(self, field_name: str, raw: str) -> MappedValue:
        """Translate one source value with this profile's value map. Raises KeyError if the
        value is neither in the map nor (for coded fields) a catalogue code itself."""
        key = raw.strip().casefold()
        table = self.values.get(field_name, {})
        if key in table:
            return table[key]
        spec = FIELDS[field_name]
        if spec.kind is Kind.CODE and key in spec.codes:
            return key
        if spec.kind is Kind.BOOLEAN:
            if key in TRUE_WORDS:
                return True
            if key in FALSE_WORDS:
                return False
        raise KeyError(raw)


def list_builtin_profiles() -> list[tuple[str, str]]:
    """The profiles shipped with the node, as (name, description), sorted by name."""
    directory = resources.files(BUILTIN_PACKAGE).joinpath(BUILTIN_DIR)
    found = []
    for entry in directory.iterdir():
        if entry.name.endswith(".toml"):
            profile = parse_profile(entry.read_text("utf-8"), origin=f"built-in {entry.name}")
            found.append((profile.name, profile.description))
    return sorted(found)


def load_profile(name_or_path: str) -> Profile:
    """A built-in profile by name (``generic``, ``ticketmatic``, ``eventbrite``), or the profile
    in the TOML file at that path."""
    directory = resources.files(BUILTIN_PACKAGE).joinpath(BUILTIN_DIR)
    if NAME_PATTERN.fullmatch(name_or_path):
        entry = directory.joinpath(f"{name_or_path}.toml")
        if entry.is_file():
            return parse_profile(entry.read_text("utf-8"), origin=f"built-in {entry.name}")
    path = Path(name_or_path)
    if not path.is_file():
        names = ", ".join(name for name, _ in list_builtin_profiles())
        raise ProfileError(
            f"there is no built-in profile called {name_or_path!r} (built-in: {names}) "
            f"and no profile file at {path}"
        )
    try:
        text = path.read_text("utf-8-sig")
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: a profile file must be saved as UTF-8") from None
    return parse_profile(text, origin=str(path), fallback_name=path.stem)


def parse_profile(text: str, *, origin: str, fallback_name: str | None = None) -> Profile:
    """Validate the TOML text of a profile; every problem raises ProfileError naming ``origin``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{origin}: not valid TOML: {exc}") from None
    try:
        return Profile(origin=origin, **profile_schema.build(doc, fallback_name))
    except Invalid as exc:
        raise ProfileError(f"{origin}: {exc}") from None
