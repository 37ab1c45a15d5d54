"""The shared part of the error catalogues: the entries every service answers alike, and the
function that assembles each service's catalogue from them."""

from __future__ import annotations

from enum import StrEnum

import pytest

from aggregator.errors import CATALOGUE as AGGREGATOR
from keyholder.errors import CATALOGUE as KEYHOLDER
from node.errors import CATALOGUE as NODE
from protocol.http import JSON_NUMBER_INVALID, JSON_STRING_INVALID, JSON_TOO_DEEP
from protocol.problems import SHARED_PROBLEMS, ErrorInfo, ProblemError, build_catalogue


@pytest.mark.parametrize("catalogue", [AGGREGATOR, NODE, KEYHOLDER], ids=["agg", "node", "kh"])
def test_every_service_answers_the_shared_problems_alike(
    catalogue: dict[StrEnum, ErrorInfo],
) -> None:
    by_value = {code.value: info for code, info in catalogue.items()}
    for code, info in SHARED_PROBLEMS.items():
        assert by_value[code] is info


def test_the_json_gate_codes_are_shared() -> None:
    assert {JSON_TOO_DEEP, JSON_NUMBER_INVALID, JSON_STRING_INVALID} <= set(SHARED_PROBLEMS)


class _Codes(StrEnum):
    OWN = "own"
    NOT_FOUND = "not_found"
    MALFORMED_JSON = "malformed_json"
    JSON_TOO_DEEP = "json_too_deep"
    JSON_NUMBER_INVALID = "json_number_invalid"
    JSON_STRING_INVALID = "json_string_invalid"
    INVALID_REQUEST = "invalid_request"
    BAD_SIGNATURE = "bad_signature"
    STALE_MESSAGE = "stale_message"
    REPLAYED_MESSAGE = "replayed_message"
    WRONG_MESSAGE_TYPE = "wrong_message_type"
    METHOD_NOT_ALLOWED = "method_not_allowed"


def test_build_catalogue_keeps_the_enum_order() -> None:
    own = ErrorInfo(418, "Own.")
    catalogue = build_catalogue(_Codes, {_Codes.OWN: own})
    assert list(catalogue) == list(_Codes)
    assert catalogue[_Codes.OWN] is own
    assert catalogue[_Codes.NOT_FOUND] is SHARED_PROBLEMS["not_found"]


def test_build_catalogue_refuses_a_code_without_an_entry() -> None:
    with pytest.raises(ValueError, match="OWN has no catalogue entry"):
        build_catalogue(_Codes, {})


def test_build_catalogue_refuses_to_redefine_a_shared_code() -> None:
    with pytest.raises(ValueError, match="redefines the shared codes"):
        build_catalogue(
            _Codes,
            {_Codes.OWN: ErrorInfo(418, "Own."), _Codes.NOT_FOUND: ErrorInfo(404, "Other.")},
        )


def test_build_catalogue_refuses_an_enum_without_the_shared_codes() -> None:
    class Few(StrEnum):
        OWN = "own"

    with pytest.raises(ValueError, match="lacks the shared codes"):
        build_catalogue(Few, {Few.OWN: ErrorInfo(418, "Own.")})


def test_body_is_a_problem_document() -> None:
    body = ErrorInfo(404, "Gone.").body("not_found", "detail", extra=1)
    assert body == {
        "type": "https://publieksdata.nl/problems/not_found",
        "title": "Gone.",
        "status": 404,
        "code": "not_found",
        "detail": "detail",
        "extra": 1,
    }


def test_a_problem_error_reads_its_title_from_the_subclass_catalogue() -> None:
    class OwnError(ProblemError[_Codes]):
        catalogue = build_catalogue(_Codes, {_Codes.OWN: ErrorInfo(418, "Own.")})

    plain = OwnError(_Codes.OWN)
    assert str(plain) == "Own." and plain.detail is None and plain.extra == {}
    detailed = OwnError(_Codes.NOT_FOUND, "No such thing.", id=3)
    assert str(detailed) == "No such thing." and detailed.code is _Codes.NOT_FOUND
    assert detailed.extra == {"id": 3}
