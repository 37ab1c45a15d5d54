"""A node replaces its signing key: announced to the aggregator signed by the old key and
confirmed by the new one. Both keys work during the overlap window (a node not restarted yet
keeps answering), then only the new one; a rotation whose confirmation is not signed by the new
key is refused and changes nothing; the node's audit log shows the rotation."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, update

from aggregator.storage.models import Node
from node.app import create_app
from node.identity import load_signing_key
from node.services.joining import rotate_key
from node.settings import NodeSettings
from node.storage.db import make_engine, make_sessionmaker
from node.storage.models import AuditEvent
from protocol.messages import NODE_KEY_CONFIRM, NODE_KEY_ROTATION
from protocol.signing import SigningKey, public_key_to_text, sign
from tests.factories import Row
from tests.fedkit import answered_round, federation, poll_body

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_rotation_with_an_overlap_window(tmp_path: Path) -> None:
    rows = [[Row(person=p, event_date=date(2025, 5, p)) for p in range(1, 6)]]
    async with federation(
        tmp_path, rows, start_nodes=lambda _i: False, node_settings={"poll_wait_seconds": 0.5}
    ) as fed:
        node, app = fed.nodes[0], fed.node_apps[0]
        old = load_signing_key(node.signing_key_path)
        engine = make_engine(node.database_url)
        async with app.router.lifespan_context(app):  # runs with the old key in memory
            new, until = await rotate_key(node, make_sessionmaker(engine), fed.client)
            assert new.key_id != old.key_id and until
            assert load_signing_key(node.signing_key_path).key_id == new.key_id
            await fed.app.state.aggregator.node_keys.load()
            await answered_round(
                fed, rho=0.01, timeout=20
            )  # the old key still works during the overlap
        again = create_app(
            NodeSettings.load(node.home), aggregator_client=fed.client, clock=fed.clock
        )
        async with again.router.lifespan_context(again):
            assert again.state.node.key.key_id == new.key_id
            await answered_round(fed, rho=0.01, timeout=20)
        # After the window only the new key is accepted.
        agg_engine = create_engine(fed.settings.database_url)
        with agg_engine.begin() as conn:
            row = conn.execute(select(Node.key_id, Node.retired_key_id)).one()
            assert (row.key_id, row.retired_key_id) == (new.key_id, old.key_id)
            conn.execute(
                update(Node).values(retired_until=datetime.now(UTC) - timedelta(seconds=1))
            )
        agg_engine.dispose()
        await fed.app.state.aggregator.node_keys.load()
        stale = await fed.client.post(
            "/v1/node/poll",
            content=poll_body(fed, old),
            headers={"content-type": "application/json"},
        )
        assert stale.status_code == 401 and stale.json()["code"] == "unknown_key"
        fresh = await fed.client.post(
            "/v1/node/poll",
            content=poll_body(fed, new),
            headers={"content-type": "application/json"},
        )
        assert fresh.status_code == 200
        with engine.connect() as conn:
            bodies = [
                json.loads(b)
                for b in conn.scalars(
                    select(AuditEvent.body).where(AuditEvent.kind == "key_rotation")
                )
            ]
        engine.dispose()
        assert bodies and bodies[0]["own_key"] is True
        assert (bodies[0]["old_key_id"], bodies[0]["new_key_id"]) == (old.key_id, new.key_id)


async def test_a_rotation_without_the_new_keys_confirmation_is_refused(tmp_path: Path) -> None:
    rows = [[Row(person=1, event_date=date(2025, 5, 1))]]
    async with federation(tmp_path, rows, start_nodes=lambda _i: False) as fed:
        node = fed.nodes[0]
        old = load_signing_key(node.signing_key_path)
        new, impostor = SigningKey.generate(), SigningKey.generate()
        stated = {
            "old_key_id": old.key_id,
            "new_key_id": new.key_id,
            "new_key": public_key_to_text(new.public),
        }
        forged = sign(NODE_KEY_CONFIRM, stated, impostor)
        body = sign(
            NODE_KEY_ROTATION, {**stated, "confirmation": forged.model_dump(mode="json")}, old
        )
        response = await fed.client.post(
            "/v1/node/rotate",
            content=body.model_dump_json(),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422, response.text
        agg_engine = create_engine(fed.settings.database_url)
        with agg_engine.connect() as conn:
            assert conn.scalar(select(Node.key_id)) == old.key_id
        agg_engine.dispose()
