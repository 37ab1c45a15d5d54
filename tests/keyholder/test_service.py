"""The key holder service in-process: enrolment, evaluation, refusals, rate limit, audit."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from keyholder.errors import CATALOGUE, ErrorCode
from keyholder.storage.db import make_sessionmaker, make_sync_engine
from keyholder.storage.models import AuditEntry
from protocol import oprf
from protocol.sector import EVALUATE, KEYHOLDER_JOIN, KeyholderJoinRequest, oprf_input
from protocol.signing import Envelope, SigningKey, public_key_to_text, sign
from tests.keyholderkit import Holder, running_holders


def _body(envelope: Envelope) -> bytes:
    return envelope.model_dump_json().encode("utf-8")


def _enrol(holder: Holder, key: SigningKey, code: str | None = None) -> int:
    join = KeyholderJoinRequest(
        invite=code or holder.invite(),
        institution="Theater",
        public_key=public_key_to_text(key.public),
    )
    envelope = sign(KEYHOLDER_JOIN, join.model_dump(mode="json"), key)
    return holder.client.post("/v1/enrol", content=_body(envelope)).status_code


def _evaluate(holder: Holder, key: SigningKey, elements: list[str], year: int = 2025) -> Envelope:
    payload = {"key_set": holder.share.key_set, "year": year, "elements": elements}
    return sign(EVALUATE, payload, key)


def _blinded(n: int) -> tuple[list[bytes], list[int], list[str]]:
    inputs = [oprf_input(f"p{i}@example.nl", 2025) for i in range(n)]
    blinds = [oprf.blind(data) for data in inputs]
    return inputs, [r for r, _ in blinds], [b.hex() for _, b in blinds]


def test_catalogue_covers_every_code() -> None:
    assert set(CATALOGUE) == set(ErrorCode)


def test_enrolled_node_gets_its_evaluations(tmp_path: Path) -> None:
    with running_holders(tmp_path) as kit:
        holder, key = kit.holders[0], SigningKey.generate()
        info = holder.client.get("/v1/info").json()
        assert (info["index"], info["threshold"], info["holders"]) == (1, 2, 3)
        assert _enrol(holder, key) == 200
        _, _, elements = _blinded(3)
        response = holder.client.post(
            "/v1/evaluate", content=_body(_evaluate(holder, key, elements))
        )
        assert response.status_code == 200
        answer = Envelope.model_validate_json(response.content)
        assert answer.type == "oprf_evaluated"
        expected = [oprf.evaluate(holder.share.share, bytes.fromhex(e)).hex() for e in elements]
        assert answer.payload["elements"] == expected
        assert answer.payload["index"] == 1


def test_invites_work_once_and_wrong_codes_lock(tmp_path: Path) -> None:
    with running_holders(tmp_path, enrol_max_failures=2) as kit:
        holder = kit.holders[0]
        code = holder.invite()
        assert _enrol(holder, SigningKey.generate(), code) == 200
        assert _enrol(holder, SigningKey.generate(), code) == 403  # used
        assert _enrol(holder, SigningKey.generate(), "AAAAA-BBBBB-CCCCC-DDDDD") == 403
        # two failures from this address: locked, even with a good code
        assert _enrol(holder, SigningKey.generate()) == 429


def test_unenrolled_node_is_refused(tmp_path: Path) -> None:
    with running_holders(tmp_path) as kit:
        holder = kit.holders[0]
        _, _, elements = _blinded(1)
        stranger = SigningKey.generate()
        response = holder.client.post(
            "/v1/evaluate", content=_body(_evaluate(holder, stranger, elements))
        )
        assert response.status_code == 401
        assert response.json()["code"] == "unknown_key"


def test_replay_is_refused(tmp_path: Path) -> None:
    with running_holders(tmp_path) as kit:
        holder, key = kit.holders[0], SigningKey.generate()
        _enrol(holder, key)
        _, _, elements = _blinded(2)
        body = _body(_evaluate(holder, key, elements))
        assert holder.client.post("/v1/evaluate", content=body).status_code == 200
        again = holder.client.post("/v1/evaluate", content=body)
        assert again.status_code == 409
        assert again.json()["code"] == "replayed_message"


def test_rate_limit_per_node_and_window(tmp_path: Path, db_url: str) -> None:
    with running_holders(
        tmp_path, first_database_url=db_url, rate_limit_elements=5, rate_window_seconds=3600
    ) as kit:
        holder, key, other = kit.holders[0], SigningKey.generate(), SigningKey.generate()
        _enrol(holder, key)
        _enrol(holder, other)
        _, _, elements = _blinded(3)
        post = holder.client.post
        assert (
            post("/v1/evaluate", content=_body(_evaluate(holder, key, elements))).status_code == 200
        )
        refused = post("/v1/evaluate", content=_body(_evaluate(holder, key, elements)))
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert 0 < int(refused.headers["Retry-After"]) <= 3601
        # another node has its own allowance
        assert (
            post("/v1/evaluate", content=_body(_evaluate(holder, other, elements))).status_code
            == 200
        )
        kit.clock.advance(timedelta(hours=1))
        assert (
            post("/v1/evaluate", content=_body(_evaluate(holder, key, elements))).status_code == 200
        )


def test_oversized_body_and_batch(tmp_path: Path) -> None:
    with running_holders(tmp_path, max_batch=4, max_body_bytes=4096) as kit:
        holder, key = kit.holders[0], SigningKey.generate()
        _enrol(holder, key)
        _, _, elements = _blinded(5)
        too_many = holder.client.post(
            "/v1/evaluate", content=_body(_evaluate(holder, key, elements))
        )
        assert too_many.status_code == 413
        assert too_many.json()["code"] == "batch_too_large"
        huge = holder.client.post(
            "/v1/evaluate",
            content=b"{" + b" " * 5000 + b"}",
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413
        assert huge.json()["code"] == "body_too_large"


def test_bad_elements_and_wrong_key_set(tmp_path: Path) -> None:
    with running_holders(tmp_path) as kit:
        holder, key = kit.holders[0], SigningKey.generate()
        _enrol(holder, key)
        identity = holder.client.post(
            "/v1/evaluate", content=_body(_evaluate(holder, key, ["00" * 32]))
        )
        assert identity.json()["code"] == "invalid_element"
        _, _, elements = _blinded(1)
        wrong = sign(EVALUATE, {"key_set": "0" * 16, "year": 2025, "elements": elements}, key)
        assert holder.client.post("/v1/evaluate", content=_body(wrong)).json()["code"] == (
            "wrong_key_set"
        )


def test_audit_log_has_counts_never_elements(tmp_path: Path, db_url: str) -> None:
    with running_holders(tmp_path, first_database_url=db_url, rate_limit_elements=4) as kit:
        holder, key = kit.holders[0], SigningKey.generate()
        _enrol(holder, key)
        _, _, elements = _blinded(3)
        holder.client.post("/v1/evaluate", content=_body(_evaluate(holder, key, elements, 2024)))
        holder.client.post("/v1/evaluate", content=_body(_evaluate(holder, key, elements, 2024)))
        engine = make_sync_engine(holder.settings.database_url)
        try:
            with make_sessionmaker(engine)() as session:
                rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
                assert [(r.year, r.count, r.outcome) for r in rows] == [
                    (2024, 3, "evaluated"),
                    (2024, 3, "rate_limited"),
                ]
        finally:
            engine.dispose()
        if db_url.startswith("sqlite"):
            stored = Path(holder.settings.database_url.removeprefix("sqlite:///")).read_bytes()
            for element in elements:
                assert element.encode() not in stored
                assert bytes.fromhex(element) not in stored


@pytest.mark.parametrize("removed", [True])
def test_removed_node_is_refused(tmp_path: Path, removed: bool) -> None:
    from datetime import UTC, datetime

    from keyholder.storage.models import Node

    with running_holders(tmp_path) as kit:
        holder, key = kit.holders[0], SigningKey.generate()
        _enrol(holder, key)
        engine = make_sync_engine(holder.settings.database_url)
        try:
            with make_sessionmaker(engine).begin() as session:
                node = session.scalars(select(Node)).one()
                node.removed_at = datetime.now(UTC) if removed else None
        finally:
            engine.dispose()
        _, _, elements = _blinded(1)
        response = holder.client.post(
            "/v1/evaluate", content=_body(_evaluate(holder, key, elements))
        )
        assert response.json()["code"] == "unknown_key"
