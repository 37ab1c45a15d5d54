"""A real federation: the aggregator and nodes as separate uvicorn processes on loopback.

* An aggregator crash (SIGKILL) in the middle of a round loses nothing: the answer it already
  had is kept, the round completes once the other node answers the restarted aggregator, and a
  round whose deadline passed while the aggregator was down is closed when it comes back.
* ``publieksdata demo --keep-running`` brings a federation up and Ctrl-C takes every one of its
  processes down again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest

from aggregator.services.tokens import Role
from node.identity import load_signing_key
from node.services.joining import join
from node.settings import NodeSettings
from node.storage.db import make_engine, make_sessionmaker
from protocol.messages import POLL, Poll
from protocol.results import NodeStatus, RoundResult, RoundState
from protocol.signing import sign
from publieksdata.processes import Service, Supervisor, free_port, start
from tests.factories import Row
from tests.fedkit import make_aggregator, make_token, node_report, node_with_rows

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]
CHILD_ENV = {"PUBLIEKSDATA_LOG_LEVEL": "warning", "PUBLIEKSDATA_TESTING": "1"}


def _aggregator(home: Path, port: int, log: Path) -> Service:
    return start(
        "aggregator",
        ["aggregator", "serve", "--home", str(home), "--port", str(port)],
        port,
        log,
        CHILD_ENV,
    )


def _node(settings: NodeSettings, log: Path) -> Service:
    port = free_port()
    return start(
        settings.institution,
        ["node", "serve", "--home", str(settings.home), "--port", str(port)],
        port,
        log,
        CHILD_ENV,
    )


async def _join(url: str, admin: str, settings: NodeSettings) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{url}/v1/admin/invites",
            json={"institution": settings.institution},
            headers={"authorization": f"Bearer {admin}"},
        )
        assert response.status_code == 201, response.text
        engine = make_engine(settings.database_url)
        try:
            key = load_signing_key(settings.signing_key_path)
            await join(
                settings, make_sessionmaker(engine), key, url, response.json()["code"], client
            )
        finally:
            engine.dispose()


def _get_round(url: str, token: str, round_id: str, **params: float) -> RoundResult:
    response = httpx.get(
        f"{url}/v1/rounds/{round_id}",
        params=params,
        headers={"authorization": f"Bearer {token}"},
        timeout=70,
    )
    assert response.status_code == 200, response.text
    return RoundResult.model_validate(response.json())


def _until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_an_aggregator_crash_mid_round_loses_no_answer(tmp_path: Path) -> None:
    agg = make_aggregator(tmp_path / "agg", min_quorum=1)
    admin = asyncio.run(make_token(agg, Role.ADMIN, "admin"))
    analyst = asyncio.run(make_token(agg, Role.ANALYST, "analist"))
    rows = [Row(person=p, event_date=date(2025, 5, 1 + p % 20)) for p in range(1, 40)]
    first, e1 = node_with_rows(tmp_path / "n1", "Eerste", rows)
    second, e2 = node_with_rows(tmp_path / "n2", "Tweede", rows)
    e1.dispose()
    e2.dispose()
    port = free_port()
    logs = tmp_path / "logs"
    headers = {"authorization": f"Bearer {analyst}"}
    with Supervisor() as supervisor:
        aggregator = supervisor.add(_aggregator(agg.home, port, logs / "agg.log"))
        aggregator.wait_healthy(30)
        for node in (first, second):
            asyncio.run(_join(aggregator.url, admin, node))
        node_one = supervisor.add(_node(first, logs / "n1.log"))
        node_one.wait_healthy(30)

        ask = {
            "report": {"name": "volume", "year": 2025, "rho": 0.05, "mode": "independent"},
            "quorum": 2,
        }
        long_round = httpx.post(
            f"{aggregator.url}/v1/rounds", json={**ask, "deadline_seconds": 120}, headers=headers
        )
        # Long enough for the first node to answer it on a busy machine.
        short_round = httpx.post(
            f"{aggregator.url}/v1/rounds", json={**ask, "deadline_seconds": 20}, headers=headers
        )
        assert long_round.status_code == short_round.status_code == 201, long_round.text
        long_id, short_id = long_round.json()["round_id"], short_round.json()["round_id"]
        _until(
            lambda: all(
                _get_round(aggregator.url, analyst, r).coverage.answered == 1
                for r in (long_id, short_id)
            ),
            30,
            "the first node's answers to both rounds",
        )

        aggregator.kill()  # a crash: no shutdown handlers run
        # The short round's deadline passes while the aggregator is down.
        short_deadline = datetime.fromisoformat(short_round.json()["deadline"])
        time.sleep(max(0.0, (short_deadline - datetime.now(UTC)).total_seconds()) + 0.5)
        aggregator = supervisor.add(_aggregator(agg.home, port, logs / "agg2.log"))
        aggregator.wait_healthy(30)

        short = _get_round(aggregator.url, analyst, short_id)
        assert short.state is RoundState.CLOSED  # closed at start-up, its deadline had passed
        assert short.coverage.answered == 1  # the first node's answer survived the crash
        assert short.quorum_met is False and short.measures == ()

        node_two = supervisor.add(_node(second, logs / "n2.log"))
        node_two.wait_healthy(30)
        result = _get_round(aggregator.url, analyst, long_id, wait=30, seen=1)
        _until(
            lambda: _get_round(aggregator.url, analyst, long_id).state is RoundState.CLOSED,
            40,
            "the long round to close",
        )
        result = _get_round(aggregator.url, analyst, long_id)
        assert [n.status for n in result.coverage.nodes] == [NodeStatus.ANSWERED] * 2
        assert result.quorum_met and not result.partial and result.measures


def _descendants_alive(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (the demo's own directory)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            alive.append(int(entry.name))
    return alive


def test_demo_keeps_running_until_ctrl_c_and_leaves_no_process(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    ready = tmp_path / "ready"
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "publieksdata",
            "demo",
            "--nodes",
            "3",
            "--rows",
            "3000",
            "--home",
            str(home),
            "--keep-running",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(
            os.environ,
            PUBLIEKSDATA_DEMO_READY_FILE=str(ready),
            COLUMNS="60",  # narrower than the paths and addresses it prints
            PUBLIEKSDATA_LOG_FORMAT="json",
            PUBLIEKSDATA_LOG_LEVEL="info",
        ),
    )
    try:
        _until(lambda: ready.exists() or demo.poll() is not None, 120, "the demo to come up")
        output = (tmp_path / "demo.log").read_text("utf-8")
        assert demo.poll() is None, output
        assert "3 van 3 instellingen beantwoordden" in output
        url = ready.read_text("utf-8")
        assert httpx.get(f"{url}/v1/health", timeout=5).status_code == 200
        # The demo ends by publishing a release and printing its page's address.
        page = f"{url}/nl/releases/demo-sector-2025-v1"
        assert page in output  # whole on one line, to copy (never wrapped by the console)
        assert f"{home / 'logs'}\n" in output
        release = httpx.get(page, timeout=10)
        assert release.status_code == 200 and "<svg" in release.text
        # Each node's admin pages and login are printed, and the login works.
        logins = re.findall(
            r"(http://127\.0\.0\.1:\d+/admin/)\s+wachtwoord \(password\): (\S+)", output
        )
        assert len(logins) == 3, output
        _admin_login(*logins[0])
        children = [pid for pid in _descendants_alive(str(home)) if pid != demo.pid]
        assert len(children) == 4, children  # the aggregator and three nodes
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        assert demo.wait(timeout=60) == 0, (tmp_path / "demo.log").read_text("utf-8")
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        log.close()
    output = (tmp_path / "demo.log").read_text("utf-8")
    assert "Alle demoprocessen zijn gestopt." in output  # --lang nl, the default
    _logs_hold_no_identifiers(home / "logs", tmp_path / "exports", nodes=3, rows=3000)
    assert _descendants_alive(str(home)) == []
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/v1/health", timeout=2)


def _logs_hold_no_identifiers(logs: Path, scratch: Path, nodes: int, rows: int) -> None:
    """Every service log line is JSON, and none holds a direct identifier of the generated
    exports the demo imported (made again here from the demo's seeds)."""
    import csv

    from node.ingest.generate import generate_export
    from publieksdata.demo import YEAR, _institution

    scratch.mkdir()
    identifiers: set[str] = set()
    for i in range(nodes):
        kind, _ = _institution(i)
        export = scratch / f"{i}.csv"
        generate_export(export, kind=kind, rows=rows, seed=YEAR + i, year=YEAR)  # type: ignore[arg-type]
        with export.open(encoding="utf-8-sig") as handle:
            for row in csv.DictReader(handle, delimiter=";"):
                for column in ("customer_id", "email", "phone", "last_name", "street"):
                    value = (row.get(column) or "").strip()
                    if len(value) >= 6:
                        identifiers.add(value)
    assert len(identifiers) > 1000
    words = {i for i in identifiers if " " not in i}
    phrases = identifiers - words
    lines = 0
    for log_file in logs.glob("*.log"):
        text = log_file.read_text("utf-8")
        for line in text.splitlines():
            if line.strip():
                lines += 1
                json.loads(line)  # structured: one JSON object per line
        leaked = (set(re.findall(r"[\w.@+-]+", text)) & words) | {p for p in phrases if p in text}
        assert not leaked, f"{log_file.name} logs identifiers: {sorted(leaked)[:3]}"
    assert lines > 0


def _admin_login(admin_url: str, password: str) -> None:
    """Log in as a browser does (the cookies are Secure, so httpx's jar would not send them over
    plain http: they are passed by hand)."""
    page = httpx.get(f"{admin_url}login", timeout=10)
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token is not None
    response = httpx.post(
        f"{admin_url}login",
        data={"password": password, "login_token": token.group(1)},
        cookies={"pd_login": page.cookies["pd_login"]},
        timeout=10,
    )
    assert response.status_code == 303, response.text
    overview = httpx.get(admin_url, cookies={"pd_admin": response.cookies["pd_admin"]}, timeout=10)
    assert overview.status_code == 200 and "(synthetisch)" in overview.text


def _signed_poll(node: NodeSettings, aggregator_key_id: str, wait: float) -> bytes:
    message = Poll(
        aggregator_key_id=aggregator_key_id,
        report=node_report(node.institution),
        wait_seconds=wait,
    )
    key = load_signing_key(node.signing_key_path)
    return sign(POLL, message.model_dump(mode="json"), key).model_dump_json().encode("utf-8")


def test_long_polls_end_cleanly_on_disconnect_and_on_shutdown(tmp_path: Path) -> None:
    agg = make_aggregator(tmp_path / "agg", min_quorum=1)
    admin = asyncio.run(make_token(agg, Role.ADMIN, "admin"))
    analyst = asyncio.run(make_token(agg, Role.ANALYST, "analist"))
    node, engine = node_with_rows(tmp_path / "n1", "Eerste", [Row(1, date(2025, 5, 1))])
    engine.dispose()
    port = free_port()
    log = tmp_path / "agg.log"
    with Supervisor() as supervisor:
        aggregator = supervisor.add(_aggregator(agg.home, port, log))
        aggregator.wait_healthy(30)
        asyncio.run(_join(aggregator.url, admin, node))
        key_id = httpx.get(f"{aggregator.url}/v1/health").json()["key_id"]
        poll_url = f"{aggregator.url}/v1/node/poll"
        headers = {"content-type": "application/json"}

        # A node that hangs up in the middle of its long-poll is not handed the next task.
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(poll_url, content=_signed_poll(node, key_id, 20), headers=headers, timeout=1)
        time.sleep(0.5)
        created = httpx.post(
            f"{aggregator.url}/v1/rounds",
            json={
                "report": {"name": "volume", "year": 2025, "rho": 0.05, "mode": "independent"},
                "deadline_seconds": 2,
            },
            headers={"authorization": f"Bearer {analyst}"},
        )
        assert created.status_code == 201, created.text
        round_id = created.json()["round_id"]
        _until(
            lambda: (
                _get_round(aggregator.url, analyst, round_id, wait=5).state is RoundState.CLOSED
            ),
            60,
            "the round to close at its deadline",
        )
        [outcome] = _get_round(aggregator.url, analyst, round_id).coverage.nodes
        assert (outcome.status, outcome.reason) == (NodeStatus.TIMED_OUT, "not_delivered")

        # Shutting down answers a hanging long-poll at once, with no task and no error.
        results: list[httpx.Response] = []
        poller = threading.Thread(
            target=lambda: results.append(
                httpx.post(
                    poll_url, content=_signed_poll(node, key_id, 25), headers=headers, timeout=30
                )
            )
        )
        poller.start()
        time.sleep(1)
        started = time.monotonic()
        aggregator.process.send_signal(signal.SIGTERM)
        poller.join(timeout=20)
        # uvicorn re-raises the signal after its graceful shutdown: killed by SIGTERM, cleanly.
        assert aggregator.process.wait(timeout=20) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 5
        assert [(r.status_code, r.json()) for r in results] == [(200, {"tasks": []})]
    output = log.read_text("utf-8")
    assert "Traceback" not in output and "CancelledError" not in output, output
