"""Import profiles: declarative TOML files that describe one ticketing system's export.

A profile says how the file is written (delimiter, encoding, decimal comma or point, date
formats), which source column holds which canonical field, how source values translate to
catalogue codes, and which constant values to use for fields the export lacks. Profiles ship with
the node (``generic``, ``ticketmatic``, ``eventbrite``) or are written by the operator; both are
validated strictly, so a typo is reported when the profile is loaded, not halfway an import.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from importlib import resources
from pathlib import Path
from typing import Any

from node.ingest.errors import ProfileError
from node.ingest.fields import (
    FALSE_WORDS,
    FIELDS,
    REQUIRED_FIELDS,
    TRUE_WORDS,
    UNKNOWN,
    VALUE_MAP_FIELDS,
    Kind,
)

BUILTIN_PACKAGE = "node.ingest"
BUILTIN_DIR = "profiles"
ISO = "iso"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
DELIMITERS = {"auto": None, ";": ";", ",": ",", "tab": "\t", "\t": "\t", "|": "|"}
MISSING_CUSTOMER = ("reject", "order", "ticket")

# A value in a [values.<field>] table or a default: a catalogue code, or for yes/no fields a
# boolean, or None for "unknown".
MappedValue = str | bool | None

_SECTIONS = {"profile", "format", "columns", "values", "defaults"}
_PROFILE_KEYS = {"name", "description"}
_FORMAT_KEYS = {
    "delimiter",
    "encoding",
    "decimal",
    "price_unit",
    "date_formats",
    "time_formats",
    "sheet",
    "skip_rows",
    "missing_customer",
}


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

    def with_defaults(self, extra: Mapping[str, str] | None) -> Profile:
        """This profile with the operator's ``--default field=value`` options added."""
        if not extra:
            return self
        merged = dict(self.defaults)
        for key, raw in extra.items():
            try:
                merged[key] = _default_value(key, raw, self.values, "--default")
            except _Invalid as exc:
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
        return _build(doc, origin, fallback_name)
    except _Invalid as exc:
        raise ProfileError(f"{origin}: {exc}") from None


class _Invalid(Exception):
    pass


def _build(doc: dict[str, Any], origin: str, fallback_name: str | None) -> Profile:
    _only(doc, _SECTIONS, "the profile")
    meta = _table(doc, "profile")
    _only(meta, _PROFILE_KEYS, "[profile]")
    name = meta.get("name", fallback_name)
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise _Invalid(
            "[profile] name must be lower-case letters, digits, '-' or '_' (at most 64), "
            f"got {name!r}"
        )
    description = _string(meta.get("description", ""), "[profile] description")

    fmt = _table(doc, "format")
    _only(fmt, _FORMAT_KEYS, "[format]")
    options = _format_options(fmt)

    columns, customer = _columns(_table(doc, "columns"), options["missing_customer"])
    values = _value_maps(_table(doc, "values"))
    raw_defaults = _table(doc, "defaults")
    defaults = {
        key: _default_value(key, raw, values, "[defaults]") for key, raw in raw_defaults.items()
    }
    return Profile(
        name=name,
        description=description,
        origin=origin,
        columns=columns,
        customer=customer,
        values=values,
        defaults=defaults,
        **options,
    )


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _Invalid(
            f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _table(doc: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise _Invalid(f"[{key}] must be a table")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"{where} must be a text value in quotes, got {value!r}")
    return value


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _Invalid(f"{where} must be a list of text values, e.g. [\"%d-%m-%Y\"]")
    return tuple(value)


def _format_options(fmt: Mapping[str, Any]) -> dict[str, Any]:
    delimiter_key = _string(fmt.get("delimiter", "auto"), "[format] delimiter")
    if delimiter_key not in DELIMITERS:
        raise _Invalid(
            f"[format] delimiter {delimiter_key!r} is not supported; use one of "
            '"auto", ";", ",", "tab", "|"'
        )
    encoding = _string(fmt.get("encoding", "auto"), "[format] encoding")
    if encoding != "auto":
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise _Invalid(
                f"[format] encoding {encoding!r} is unknown; use \"auto\", \"utf-8\", "
                '"utf-8-sig" or "cp1252"'
            ) from None
    decimal = _string(fmt.get("decimal", "comma"), "[format] decimal")
    if decimal not in ("comma", "point"):
        raise _Invalid(f'[format] decimal must be "comma" or "point", got {decimal!r}')
    price_unit = _string(fmt.get("price_unit", "euros"), "[format] price_unit")
    if price_unit not in ("euros", "cents"):
        raise _Invalid(f'[format] price_unit must be "euros" or "cents", got {price_unit!r}')
    date_formats = _string_list(fmt.get("date_formats", ["%d-%m-%Y"]), "[format] date_formats")
    time_formats = _string_list(
        fmt.get("time_formats", ["%H:%M", "%H:%M:%S"]), "[format] time_formats"
    )
    for pattern in date_formats:
        _check_date_format(pattern)
    for pattern in time_formats:
        _check_time_format(pattern)
    sheet = fmt.get("sheet")
    if sheet is not None:
        sheet = _string(sheet, "[format] sheet")
    skip_rows = fmt.get("skip_rows", 0)
    if not isinstance(skip_rows, int) or isinstance(skip_rows, bool) or not 0 <= skip_rows < 100:
        raise _Invalid(f"[format] skip_rows must be a whole number from 0 to 99, got {skip_rows!r}")
    missing = _string(fmt.get("missing_customer", "reject"), "[format] missing_customer")
    if missing not in MISSING_CUSTOMER:
        raise _Invalid(
            f"[format] missing_customer must be one of {', '.join(MISSING_CUSTOMER)}, "
            f"got {missing!r}"
        )
    # ISO 8601 is always understood, after the profile's own formats.
    return {
        "delimiter": DELIMITERS[delimiter_key],
        "encoding": None if encoding == "auto" else encoding,
        "decimal": "," if decimal == "comma" else ".",
        "price_unit": price_unit,
        "date_formats": (*(f for f in date_formats if f != ISO), ISO),
        "time_formats": (*(f for f in time_formats if f != ISO), ISO),
        "sheet": sheet,
        "skip_rows": skip_rows,
        "missing_customer": missing,
    }


def _check_date_format(pattern: str) -> None:
    if pattern == ISO:
        return
    if " " in pattern:
        raise _Invalid(
            f"[format] date format {pattern!r} contains a space; a date is written without "
            "spaces (a time may follow after one space, see time_formats)"
        )
    sample = date(2024, 12, 31)
    try:
        ok = datetime.strptime(sample.strftime(pattern), pattern).date() == sample
    except ValueError:
        ok = False
    if not ok:
        raise _Invalid(
            f"[format] date format {pattern!r} does not describe a full date; use codes such "
            'as "%d-%m-%Y" (31-12-2024), "%d/%m/%Y" or "iso" (2024-12-31)'
        )


def _check_time_format(pattern: str) -> None:
    if pattern == ISO:
        return
    sample = time(21, 45)
    try:
        parsed = datetime.strptime(datetime.combine(date(2024, 1, 1), sample).strftime(pattern),
                                   pattern).time()
        ok = (parsed.hour, parsed.minute) == (21, 45)
    except ValueError:
        ok = False
    if not ok:
        raise _Invalid(
            f"[format] time format {pattern!r} does not describe a time of day; use codes "
            'such as "%H:%M" (21:45) or "%H:%M:%S"'
        )


def _columns(table: Mapping[str, Any], missing_customer: str) -> tuple[dict[str, str], tuple[str, ...]]:
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise _Invalid(
            f"[columns] has unknown field(s) {', '.join(map(repr, unknown))}; "
            f"the fields are: {', '.join(FIELDS)}"
        )
    columns: dict[str, str] = {}
    customer: tuple[str, ...] = ()
    for key, value in table.items():
        if key == "customer":
            customer = _string_list(value, "[columns] customer")
        else:
            columns[key] = _string(value, f"[columns] {key}").strip()
            if not columns[key]:
                raise _Invalid(f"[columns] {key} is empty; leave the line out instead")
    missing = [name for name in REQUIRED_FIELDS if name not in columns]
    if not customer and missing_customer == "reject":
        missing.append("customer")
    if missing_customer == "order" and "order_id" not in columns:
        missing.append("order_id (needed by missing_customer = \"order\")")
    if missing:
        raise _Invalid(
            f"[columns] must map {', '.join(missing)}: the import cannot work without "
            + ("them" if len(missing) > 1 else "it")
        )
    if "birth_date" in columns and "birth_year" in columns:
        raise _Invalid("[columns] maps both birth_date and birth_year; map only one of them")
    return columns, customer


def _value_maps(table: Mapping[str, Any]) -> dict[str, dict[str, MappedValue]]:
    maps: dict[str, dict[str, MappedValue]] = {}
    for field_name, entries in table.items():
        if field_name not in VALUE_MAP_FIELDS:
            raise _Invalid(
                f"[values.{field_name}] is not possible; value maps exist for "
                f"{', '.join(VALUE_MAP_FIELDS)}"
            )
        if not isinstance(entries, dict):
            raise _Invalid(f"[values.{field_name}] must be a table of \"source value\" = code")
        spec = FIELDS[field_name]
        mapping: dict[str, MappedValue] = {}
        for source_value, target in entries.items():
            key = source_value.strip().casefold()
            where = f"[values.{field_name}] {source_value!r}"
            if spec.kind is Kind.BOOLEAN:
                if target == UNKNOWN:
                    mapped: MappedValue = None
                elif isinstance(target, bool):
                    mapped = target
                else:
                    raise _Invalid(f"{where} must map to true, false or \"unknown\", got {target!r}")
            else:
                if not isinstance(target, str) or target not in spec.codes:
                    raise _Invalid(
                        f"{where} maps to {target!r}, which is not a catalogue code for "
                        f"{field_name}; allowed: {', '.join(spec.codes)}"
                    )
                mapped = target
            if key in mapping and mapping[key] != mapped:
                raise _Invalid(
                    f"{where} appears twice (ignoring case and spaces) with different codes"
                )
            mapping[key] = mapped
        maps[field_name] = mapping
    return maps


def _default_value(
    key: str, raw: Any, values: Mapping[str, Mapping[str, MappedValue]], where: str
) -> MappedValue | int:
    spec = FIELDS.get(key)
    if spec is None or not spec.defaultable:
        allowed = ", ".join(name for name, s in FIELDS.items() if s.defaultable)
        raise _Invalid(f"{where}: no default is possible for {key!r}; possible: {allowed}")
    if spec.kind is Kind.INTEGER:
        if isinstance(raw, int) and not isinstance(raw, bool):
            number = raw
        elif isinstance(raw, str) and raw.strip().isdigit():
            number = int(raw.strip())
        else:
            raise _Invalid(f"{where}: {key} must be a whole number, got {raw!r}")
        if number < 0:
            raise _Invalid(f"{where}: {key} cannot be negative")
        return number
    if isinstance(raw, bool) and spec.kind is Kind.BOOLEAN:
        return raw
    text = _string(raw, f"{where} {key}").strip()
    if spec.kind is Kind.TEXT:
        return text
    folded = text.casefold()
    table = values.get(key, {})
    if folded in table:
        return table[folded]
    if spec.kind is Kind.BOOLEAN:
        if folded in TRUE_WORDS:
            return True
        if folded in FALSE_WORDS:
            return False
        if folded == UNKNOWN:
            return None
        raise _Invalid(f"{where}: {key} must be yes/no (ja/nee, true/false), got {text!r}")
    if folded in spec.codes:
        return folded
    raise _Invalid(
        f"{where}: {text!r} is not a catalogue code for {key}; allowed: {', '.join(spec.codes)}"
    )
