"""Validating the TOML document of an import profile, section by section.

Every problem raises :class:`Invalid` with a message that names the section and key, says what
is wrong and what would be right; :func:`node.ingest.profile.parse_profile` adds the file name.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any

from node.ingest.fields import (
    FALSE_WORDS,
    FIELDS,
    REQUIRED_FIELDS,
    TRUE_WORDS,
    UNKNOWN,
    VALUE_MAP_FIELDS,
    Kind,
)

ISO = "iso"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
DELIMITERS = {"auto": None, ";": ";", ",": ",", "tab": "\t", "\t": "\t", "|": "|"}
MISSING_CUSTOMER = ("reject", "order", "ticket")
# With skip_invalid, the import is still refused when more than this share of rows is rejected.
DEFAULT_MAX_REJECTED_SHARE = 0.05

# A value in a [values.<field>] table or a default: a catalogue code, or for yes/no fields a
# boolean, or None for "unknown".
MappedValue = str | bool | None

SECTIONS = {"profile", "format", "columns", "values", "defaults"}
PROFILE_KEYS = {"name", "description"}
FORMAT_KEYS = {
    "delimiter",
    "encoding",
    "decimal",
    "price_unit",
    "date_formats",
    "time_formats",
    "sheet",
    "skip_rows",
    "missing_customer",
    "max_rejected_share",
    "sector_identifier",
    "sector_kind",
}


class Invalid(Exception):
    pass


def build(doc: dict[str, Any], fallback_name: str | None) -> dict[str, Any]:
    """The keyword arguments of a Profile (all but ``origin``) from a parsed TOML document."""
    only(doc, SECTIONS, "the profile")
    meta = table(doc, "profile")
    only(meta, PROFILE_KEYS, "[profile]")
    name = meta.get("name", fallback_name)
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise Invalid(
            "[profile] name must be lower-case letters, digits, '-' or '_' (at most 64), "
            f"got {name!r}"
        )
    fmt = table(doc, "format")
    only(fmt, FORMAT_KEYS, "[format]")
    options = format_options(fmt)
    columns, customer = mapped_columns(table(doc, "columns"), options["missing_customer"])
    values = value_maps(table(doc, "values"))
    defaults = {
        key: default_value(key, raw, values, "[defaults]")
        for key, raw in table(doc, "defaults").items()
    }
    return {
        "name": name,
        "description": string(meta.get("description", ""), "[profile] description"),
        "columns": columns,
        "customer": customer,
        "values": values,
        "defaults": defaults,
        **options,
    }


def only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise Invalid(
            f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def table(doc: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise Invalid(f"[{key}] must be a table")
    return value


def string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{where} must be a text value in quotes, got {value!r}")
    return value


def string_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise Invalid(f'{where} must be a list of text values, e.g. ["%d-%m-%Y"]')
    return tuple(value)


def format_options(fmt: Mapping[str, Any]) -> dict[str, Any]:
    delimiter_key = string(fmt.get("delimiter", "auto"), "[format] delimiter")
    if delimiter_key not in DELIMITERS:
        raise Invalid(
            f"[format] delimiter {delimiter_key!r} is not supported; use one of "
            '"auto", ";", ",", "tab", "|"'
        )
    encoding = string(fmt.get("encoding", "auto"), "[format] encoding")
    if encoding != "auto":
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise Invalid(
                f'[format] encoding {encoding!r} is unknown; use "auto", "utf-8", '
                '"utf-8-sig" or "cp1252"'
            ) from None
    decimal = string(fmt.get("decimal", "comma"), "[format] decimal")
    if decimal not in ("comma", "point"):
        raise Invalid(f'[format] decimal must be "comma" or "point", got {decimal!r}')
    price_unit = string(fmt.get("price_unit", "euros"), "[format] price_unit")
    if price_unit not in ("euros", "cents"):
        raise Invalid(f'[format] price_unit must be "euros" or "cents", got {price_unit!r}')
    date_formats = string_list(fmt.get("date_formats", ["%d-%m-%Y"]), "[format] date_formats")
    time_formats = string_list(
        fmt.get("time_formats", ["%H:%M", "%H:%M:%S"]), "[format] time_formats"
    )
    for pattern in date_formats:
        check_date_format(pattern)
    for pattern in time_formats:
        check_time_format(pattern)
    sheet = fmt.get("sheet")
    if sheet is not None:
        sheet = string(sheet, "[format] sheet")
    skip_rows = fmt.get("skip_rows", 0)
    if not isinstance(skip_rows, int) or isinstance(skip_rows, bool) or not 0 <= skip_rows < 100:
        raise Invalid(f"[format] skip_rows must be a whole number from 0 to 99, got {skip_rows!r}")
    missing = string(fmt.get("missing_customer", "reject"), "[format] missing_customer")
    if missing not in MISSING_CUSTOMER:
        raise Invalid(
            f"[format] missing_customer must be one of {', '.join(MISSING_CUSTOMER)}, "
            f"got {missing!r}"
        )
    share = fmt.get("max_rejected_share", DEFAULT_MAX_REJECTED_SHARE)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise Invalid(
            "[format] max_rejected_share must be a number from 0 to 1 (0.05 allows 5% of the "
            f"rows to be rejected), got {share!r}"
        )
    sector_identifier = fmt.get("sector_identifier")
    if sector_identifier is not None:
        sector_identifier = string(sector_identifier, "[format] sector_identifier").strip()
    sector_kind = string(fmt.get("sector_kind", "email"), "[format] sector_kind")
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", sector_kind):
        raise Invalid(
            '[format] sector_kind must be a short lower-case name such as "email", '
            f"got {sector_kind!r}"
        )
    # ISO 8601 is always understood, after the profile's own formats.
    return {
        "sector_identifier": sector_identifier,
        "sector_kind": sector_kind,
        "delimiter": DELIMITERS[delimiter_key],
        "encoding": None if encoding == "auto" else encoding,
        "decimal": "," if decimal == "comma" else ".",
        "price_unit": price_unit,
        "date_formats": (*(f for f in date_formats if f != ISO), ISO),
        "time_formats": (*(f for f in time_formats if f != ISO), ISO),
        "sheet": sheet,
        "skip_rows": skip_rows,
        "missing_customer": missing,
        "max_rejected_share": float(share),
    }


def check_date_format(pattern: str) -> None:
    if pattern == ISO:
        return
    if " " in pattern:
        raise Invalid(
            f"[format] date format {pattern!r} contains a space; a date is written without "
            "spaces (a time may follow after one space, see time_formats)"
        )
    sample = date(2024, 12, 31)
    try:
        ok = datetime.strptime(sample.strftime(pattern), pattern).date() == sample
    except ValueError:
        ok = False
    if not ok:
        raise Invalid(
            f"[format] date format {pattern!r} does not describe a full date; use codes such "
            'as "%d-%m-%Y" (31-12-2024), "%d/%m/%Y" or "iso" (2024-12-31)'
        )


def check_time_format(pattern: str) -> None:
    if pattern == ISO:
        return
    sample = time(21, 45)
    try:
        parsed = datetime.strptime(
            datetime.combine(date(2024, 1, 1), sample).strftime(pattern), pattern
        ).time()
        ok = (parsed.hour, parsed.minute) == (21, 45)
    except ValueError:
        ok = False
    if not ok:
        raise Invalid(
            f"[format] time format {pattern!r} does not describe a time of day; use codes "
            'such as "%H:%M" (21:45) or "%H:%M:%S"'
        )


def mapped_columns(
    table: Mapping[str, Any], missing_customer: str
) -> tuple[dict[str, str], tuple[str, ...]]:
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise Invalid(
            f"[columns] has unknown field(s) {', '.join(map(repr, unknown))}; "
            f"the fields are: {', '.join(FIELDS)}"
        )
    columns: dict[str, str] = {}
    customer: tuple[str, ...] = ()
    for key, value in table.items():
        if key == "customer":
            customer = string_list(value, "[columns] customer")
        else:
            columns[key] = string(value, f"[columns] {key}").strip()
            if not columns[key]:
                raise Invalid(f"[columns] {key} is empty; leave the line out instead")
    missing = [name for name in REQUIRED_FIELDS if name not in columns]
    if not customer and missing_customer == "reject":
        missing.append("customer")
    if missing_customer == "order" and "order_id" not in columns:
        missing.append('order_id (needed by missing_customer = "order")')
    if missing:
        raise Invalid(
            f"[columns] must map {', '.join(missing)}: the import cannot work without "
            + ("them" if len(missing) > 1 else "it")
        )
    if "birth_date" in columns and "birth_year" in columns:
        raise Invalid("[columns] maps both birth_date and birth_year; map only one of them")
    return columns, customer


def value_maps(table: Mapping[str, Any]) -> dict[str, dict[str, MappedValue]]:
    maps: dict[str, dict[str, MappedValue]] = {}
    for field_name, entries in table.items():
        if field_name not in VALUE_MAP_FIELDS:
            raise Invalid(
                f"[values.{field_name}] is not possible; value maps exist for "
                f"{', '.join(VALUE_MAP_FIELDS)}"
            )
        if not isinstance(entries, dict):
            raise Invalid(f'[values.{field_name}] must be a table of "source value" = code')
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
                    raise Invalid(f'{where} must map to true, false or "unknown", got {target!r}')
            else:
                if not isinstance(target, str) or target not in spec.codes:
                    raise Invalid(
                        f"{where} maps to {target!r}, which is not a catalogue code for "
                        f"{field_name}; allowed: {', '.join(spec.codes)}"
                    )
                mapped = target
            if key in mapping and mapping[key] != mapped:
                raise Invalid(
                    f"{where} appears twice (ignoring case and spaces) with different codes"
                )
            mapping[key] = mapped
        maps[field_name] = mapping
    return maps


def default_value(
    key: str, raw: Any, values: Mapping[str, Mapping[str, MappedValue]], where: str
) -> MappedValue | int:
    spec = FIELDS.get(key)
    if spec is None or not spec.defaultable:
        allowed = ", ".join(name for name, s in FIELDS.items() if s.defaultable)
        raise Invalid(f"{where}: no default is possible for {key!r}; possible: {allowed}")
    if spec.kind is Kind.INTEGER:
        if isinstance(raw, int) and not isinstance(raw, bool):
            number = raw
        elif isinstance(raw, str) and raw.strip().isdigit():
            number = int(raw.strip())
        else:
            raise Invalid(f"{where}: {key} must be a whole number, got {raw!r}")
        if number < 0:
            raise Invalid(f"{where}: {key} cannot be negative")
        return number
    if isinstance(raw, bool) and spec.kind is Kind.BOOLEAN:
        return raw
    text = string(raw, f"{where} {key}").strip()
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
        raise Invalid(f"{where}: {key} must be yes/no (ja/nee, true/false), got {text!r}")
    if folded in spec.codes:
        return folded
    raise Invalid(
        f"{where}: {text!r} is not a catalogue code for {key}; allowed: {', '.join(spec.codes)}"
    )
