"""Import profiles: the shipped ones load, and operators' mistakes are reported clearly."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from node.ingest.errors import ProfileError
from node.ingest.profile import list_builtin_profiles, load_profile, parse_profile

MINIMAL = """
[columns]
ticket_id = "Ticket"
event_start = "Datum"
customer = ["Klantnummer", "E-mail"]
"""


def test_the_builtin_profiles_are_listed_and_load() -> None:
    names = [name for name, _ in list_builtin_profiles()]
    assert names == ["eventbrite", "generic", "ticketmatic"]
    files = resources.files("node.ingest").joinpath("profiles")
    assert sorted(p.name for p in files.iterdir() if p.name.endswith(".toml")) == [
        f"{n}.toml" for n in names
    ]
    for name in names:
        profile = load_profile(name)
        assert profile.name == name
        assert profile.description


def test_formats_of_the_builtin_profiles() -> None:
    generic, ticketmatic, eventbrite = (load_profile(n) for n in ("generic", "ticketmatic",
                                                                  "eventbrite"))  # fmt: skip
    assert (generic.delimiter, generic.encoding, generic.decimal) == (None, None, ",")
    assert ticketmatic.delimiter == ";"
    assert ticketmatic.missing_customer == "order"
    assert (eventbrite.delimiter, eventbrite.decimal) == (",", ".")
    assert eventbrite.defaults == {"channel": "online"}
    assert generic.customer == ("customer_id", "email")


def test_a_profile_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "mijn-kassa.toml"
    path.write_text(MINIMAL + '\n[values.status]\n"Verkocht" = "sold"\n', "utf-8")
    profile = load_profile(str(path))
    assert profile.name == "mijn-kassa"
    assert profile.origin == str(path)
    assert profile.map_value("status", "  VERKOCHT ") == "sold"
    assert profile.map_value("status", "refunded") == "refunded"  # a code maps to itself
    with pytest.raises(KeyError):
        profile.map_value("status", "weg")


def test_unknown_names_and_files_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"no built-in profile called 'kassa'.*generic"):
        load_profile("kassa")
    with pytest.raises(ProfileError, match="no profile file"):
        load_profile(str(tmp_path / "missing.toml"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[columns]\nticket_id = 'a'\n", r"must map event_start, customer"),
        (MINIMAL + "[format]\ndelimter = ';'\n", r"\[format\] has unknown key\(s\) 'delimter'"),
        (MINIMAL + "[colour]\n", r"unknown key\(s\) 'colour'"),
        (MINIMAL.replace("Datum", 'Datum"\nprijs = "Prijs'), r"unknown field\(s\) 'prijs'"),
        (MINIMAL + "[values.artform]\n'Toneel' = 'toneel'\n", r"not a catalogue code for artform"),
        (MINIMAL + "[values.venue]\n'x' = 'y'\n", r"\[values.venue\] is not possible"),
        (MINIMAL + "[values.attended]\n'ja' = 'misschien'\n", r"true, false or \"unknown\""),
        (MINIMAL + "[format]\ndate_formats = ['%H:%M']\n", r"does not describe a full date"),
        (MINIMAL + "[format]\ndecimal = 'dot'\n", r'"comma" or "point"'),
        (MINIMAL + "[format]\nencoding = 'klingon'\n", r"encoding 'klingon' is unknown"),
        (MINIMAL + "[format]\nmissing_customer = 'order'\n", r"order_id"),
        (MINIMAL + "[defaults]\nticket_id = '1'\n", r"no default is possible for 'ticket_id'"),
        (MINIMAL + "[defaults]\nartform = 'toneel'\n", r"'toneel' is not a catalogue code"),
        (MINIMAL + "[defaults]\ncapacity = 'veel'\n", r"capacity must be a whole number"),
        ("[columns\n", r"not valid TOML"),
    ],
)
def test_mistakes_in_a_profile_are_reported(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_profile(text, origin="mijn.toml", fallback_name="mijn")


def test_operator_defaults_are_validated_and_may_use_the_value_map() -> None:
    profile = parse_profile(
        MINIMAL + "[values.artform]\n'Toneel' = 'theatre'\n", origin="x", fallback_name="x"
    )
    assert profile.with_defaults({"artform": "toneel"}).defaults["artform"] == "theatre"
    assert profile.with_defaults({"artform": "dance", "capacity": "120"}).defaults == {
        "artform": "dance",
        "capacity": 120,
    }
    with pytest.raises(ProfileError, match="--default: 'opera' is not a catalogue code"):
        profile.with_defaults({"artform": "opera"})
    with pytest.raises(ProfileError, match="no default is possible for 'email'"):
        profile.with_defaults({"email": "x"})


DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "import-profiles.md"


def doc_block(language: str) -> str:
    """The first fenced block of ``language`` in docs/reference/import-profiles.md."""
    text = DOC.read_text("utf-8")
    start = text.index(f"```{language}\n") + len(language) + 4
    return text[start : text.index("```", start)]


def test_the_documented_example_profile_is_valid() -> None:
    profile = parse_profile(doc_block("toml"), origin=str(DOC))
    assert profile.name == "mijn-kassa"
    # Only the customer number: an e-mail fallback would give a customer without a number a
    # second pseudonym, and would make one "person" of every row with the same shared e-mail.
    assert profile.customer == ("Klantnummer",)
    assert profile.map_value("artform", "toneel (jeugd)") == "youth"
    assert profile.map_value("attended", "?") is None
    assert profile.defaults == {"venue": "Stadsschouwburg"}


def test_the_documented_codes_are_the_catalogue() -> None:
    from protocol.catalogue import DIMENSIONS

    text = DOC.read_text("utf-8")
    for name in ("artform", "price_type", "channel"):
        line = text[text.index(f"* `{name}`: ") :].split("\n*")[0]
        listed = [part.strip(" `\n,") for part in line.split(":", 1)[1].split(",")]
        assert listed == [c for c in DIMENSIONS[name].codes if c != "unknown"], name
