"""Federation round benchmark: round latency, task delivery and the aggregator's memory.

For each node count it starts a fresh aggregator (its own home and database), connects the nodes,
runs one discarded warm-up round and then ``--rounds`` rounds of a small query, one after the
other, each asked the way ``aggregator.client`` asks: ``POST /v1/rounds``, then
``GET /v1/rounds/{id}?wait=30&seen=<settled>`` until the round is closed.

Nodes come in two kinds:

* **real**: ``publieksdata node serve`` processes (through ``bench.round_node``, which only adds
  timing lines), each with its own home, SQLite database and a generated ticket export imported
  as in ``publieksdata demo``, joined through the real invite flow over HTTP; the aggregator is a
  real ``publieksdata aggregator serve`` process.
* **simulated**: ``bench.round_sim.SimNode`` in this process (the real protocol, precomputed
  values), enrolled through the aggregator's invite services. The aggregator runs in this process
  behind ``httpx.ASGITransport`` (``--transport asgi``, default) or as a real uvicorn process
  reached over loopback TCP (``--transport process``).

Per round: *round time* runs from just before the POST to the analyst's response that shows the
round closed (merged result included). Each node measures its own *answer time*, from the start of
its task handler to the moment its signed answer is ready to post; *overhead* is the round time
minus the slowest node's answer time. *Delivery* is, per node and round, the time from the POST
returning to the node's task handler starting (negative when the task arrives before the analyst
has the POST's response). All times use ``time.monotonic()``, one clock for all processes.

``--memory`` runs the aggregator as a real process with ``max(--nodes)`` simulated nodes holding
long-polls over TCP and reads the aggregator's VmRSS from /proc: idle (started, no node connected)
and with every node's poll hanging.

In-process only: ``--count-sql`` counts the aggregator's SQL statements per node and round,
``--profile`` writes a cProfile of the largest run. Results are printed as Markdown;
bench/RESULTS.md is written by hand.

    python -m bench.round_bench --nodes 10,50,100,1000 --rounds 20 --real 10 --memory
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bench.round_sim import Answers, Log, SimNode, Timing, enrol, running
from bench.round_variants import StatementCounter
from protocol.query import Bounds, Measure, Period, Privacy, QuerySpec

YEAR = 2025
RHO = 0.01
DEADLINE_SECONDS = 120
WAIT_SECONDS = 30  # the analyst's long-poll, as aggregator.client
PG_SERVER = os.environ.get("BENCH_POSTGRES_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432")
PG_DATABASE = "bench_agg"
QUIET = {"PUBLIEKSDATA_LOG_LEVEL": "warning"}
TARGET_DELIVERY = 0.100
SQL: StatementCounter | None = None  # --count-sql


def target_overhead(nodes: int) -> float:
    """≤ 100 ms up to 100 nodes, ≤ 1 s at 1,000 (linear in between)."""
    if nodes <= 100:
        return 0.100
    return 0.100 + 0.900 * min(1.0, (nodes - 100) / 900)


def bench_spec() -> QuerySpec:
    """Visits by artform in 2025: 15 cells, one measure, ρ = 0.01 (discrete Gaussian)."""
    return QuerySpec(
        title="Visits by artform (round benchmark)",
        period=Period(start=date(YEAR, 1, 1), end=date(YEAR, 12, 31)),
        group_by=("artform",),
        measures=(Measure.VISITS,),
        bounds=Bounds(max_visits_per_person=12, max_cells_per_person=4),
        privacy=Privacy(rho=RHO),
    )


# -- measurements ---------------------------------------------------------------------------------


def status_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of a process, or of this one."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class RoundRecord:
    round_id: str
    sent: float
    created: float
    closed: float
    gets: int
    answered: int
    total: int
    failed_gets: int = 0  # analyst GETs answered with a 5xx


@dataclass
class Summary:
    label: str
    kind: str  # real | simulated
    transport: str  # asgi | process
    db: str
    nodes: int
    rounds: list[RoundRecord] = field(default_factory=list)
    timings: dict[str, list[Timing]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def per_round(self) -> list[tuple[float, float, float]]:
        """(round time, slowest node's answer time, overhead) per complete round."""
        rows = []
        for r in self.rounds:
            seen = self.timings.get(r.round_id, [])
            if r.answered != r.total or len(seen) != r.total:
                continue
            slowest = max(t.ready - t.received for t in seen)
            total = r.closed - r.sent
            rows.append((total, slowest, total - slowest))
        return rows

    def deliveries(self, start: str = "created") -> list[float]:
        values = []
        for r in self.rounds:
            origin = r.created if start == "created" else r.sent
            values += [t.received - origin for t in self.timings.get(r.round_id, [])]
        return values

    def last_deliveries(self) -> list[float]:
        """Per round: when the last node received its task, from the POST returning."""
        return [
            max(t.received for t in self.timings[r.round_id]) - r.created
            for r in self.rounds
            if self.timings.get(r.round_id)
        ]

    def stats(self) -> dict[str, Any]:
        rows = self.per_round()
        col: list[list[float]] = [[r[i] for r in rows] for i in range(3)]
        delivery = self.deliveries()
        target = target_overhead(self.nodes)
        overhead = (percentile(col[2], 0.5), percentile(col[2], 0.95))
        delivered = (percentile(delivery, 0.5), percentile(delivery, 0.95))
        out: dict[str, Any] = {
            "label": self.label,
            "db": self.db,
            "nodes": self.nodes,
            "rounds": len(rows),
            "incomplete": len(self.rounds) - len(rows),
            "round": (percentile(col[0], 0.5), percentile(col[0], 0.95)),
            "slowest": (percentile(col[1], 0.5), percentile(col[1], 0.95)),
            "overhead": overhead,
            "target": target,
            "delivery": delivered,
            "delivery_from_sent": (
                percentile(self.deliveries("sent"), 0.5),
                percentile(self.deliveries("sent"), 0.95),
            ),
            "last_delivery": percentile(self.last_deliveries(), 0.5),
            "post": statistics.median(r.created - r.sent for r in self.rounds)
            if self.rounds
            else math.nan,
            "gets": statistics.median(r.gets for r in self.rounds) if self.rounds else math.nan,
            "errors": len(self.errors),
            "failed_gets": sum(r.failed_gets for r in self.rounds),
        }
        out["overhead_ratio"] = (overhead[0] / target, overhead[1] / target)
        out["delivery_ratio"] = (delivered[0] / TARGET_DELIVERY, delivered[1] / TARGET_DELIVERY)
        out.update(self.notes)
        return out


# -- the aggregator -------------------------------------------------------------------------------


def prepare_database(db: str) -> str | None:
    """The aggregator's database URL: None (SQLite in its home) or a fresh PostgreSQL database."""
    if db == "sqlite":
        return None
    import psycopg
    from psycopg import sql

    conninfo = PG_SERVER.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(conninfo, autocommit=True) as con:
        con.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(PG_DATABASE))
        )
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PG_DATABASE)))
    return f"{PG_SERVER}/{PG_DATABASE}"


@dataclass
class Aggregator:
    settings: Any  # AggregatorSettings
    public: Ed25519PublicKey
    admin: str
    analyst: str
    base: str = ""
    pid: int | None = None
    app: Any = None
    new_client: Callable[[], httpx.AsyncClient] | None = None


async def _tokens(database_url: str) -> tuple[str, str]:
    from aggregator.services.tokens import Role, create_token
    from aggregator.storage.db import make_async_engine, make_async_sessionmaker

    engine = make_async_engine(database_url)
    try:
        async with make_async_sessionmaker(engine)() as session, session.begin():
            admin, _ = await create_token(session, "bench-admin", Role.ADMIN)
            analyst, _ = await create_token(session, "bench-analyst", Role.ANALYST)
    finally:
        await engine.dispose()
    return admin, analyst


async def init_aggregator(home: Path, db: str) -> Aggregator:
    from aggregator.home import init_home, load_signing_key

    settings = init_home(home, "Round benchmark", prepare_database(db))
    admin, analyst = await _tokens(settings.database_url)
    return Aggregator(settings, load_signing_key(settings.signing_key_path).public, admin, analyst)


def _unlimited() -> httpx.Limits:
    return httpx.Limits(max_connections=None, max_keepalive_connections=None)


@contextlib.asynccontextmanager
async def serving(agg: Aggregator, transport: str, logs: Path) -> AsyncIterator[Aggregator]:
    """The aggregator in this process (ASGI) or as a ``publieksdata aggregator serve`` process."""
    if transport == "asgi":
        from aggregator.app import create_app

        app = create_app(agg.settings)
        async with app.router.lifespan_context(app):
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app, raise_app_exceptions=False),
                base_url="http://aggregator.bench",
            )
            agg.app = app
            agg.new_client = lambda: client
            try:
                yield agg
            finally:
                await client.aclose()
        return
    from publieksdata.processes import free_port, start

    port = free_port()
    service = start(
        "aggregator",
        ["aggregator", "serve", "--home", str(agg.settings.home), "--port", str(port)],
        port,
        logs / "aggregator.log",
        QUIET,
    )
    try:
        await asyncio.to_thread(service.wait_healthy, 60)
        agg.pid = service.process.pid
        agg.base = service.url
        agg.new_client = lambda: httpx.AsyncClient(
            base_url=service.url, limits=_unlimited(), timeout=60
        )
        yield agg
    finally:
        await asyncio.to_thread(service.stop)


async def wait_connected(
    client: httpx.AsyncClient, agg: Aggregator, count: int, timeout: float
) -> None:
    headers = {"authorization": f"Bearer {agg.analyst}"}
    deadline = time.monotonic() + timeout
    connected = 0
    while time.monotonic() < deadline:
        response = await client.get("/v1/nodes", headers=headers)
        response.raise_for_status()
        connected = sum(1 for n in response.json() if n["connected"] and n["budget"])
        if connected >= count:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"only {connected} of {count} nodes connected within {timeout:g} s")


# -- one round, as the analyst's client asks it ---------------------------------------------------


async def ask(client: httpx.AsyncClient, agg: Aggregator, spec: QuerySpec) -> RoundRecord:
    headers = {"authorization": f"Bearer {agg.analyst}"}
    body = {"spec": spec.model_dump(mode="json"), "deadline_seconds": DEADLINE_SECONDS}
    sent = time.monotonic()
    response = await client.post("/v1/rounds", json=body, headers=headers)
    created = time.monotonic()
    if response.status_code != 201:
        raise RuntimeError(f"round refused: {response.status_code} {response.text[:300]}")
    result = response.json()
    gets = failed = 0
    while result["state"] != "closed":
        coverage = result["coverage"]
        settled = coverage["total"] - coverage["pending"]
        response = await client.get(
            f"/v1/rounds/{result['round_id']}",
            params={"wait": WAIT_SECONDS, "seen": settled},
            headers=headers,
            timeout=WAIT_SECONDS + 30,
        )
        gets += 1
        if response.status_code >= 500:  # counted; the analyst asks again
            failed += 1
            await asyncio.sleep(0.5)
            continue
        response.raise_for_status()
        result = response.json()
    closed = time.monotonic()
    coverage = result["coverage"]
    return RoundRecord(
        result["round_id"],
        sent,
        created,
        closed,
        gets,
        coverage["answered"],
        coverage["total"],
        failed,
    )


async def run_rounds(
    client: httpx.AsyncClient, agg: Aggregator, rounds: int, pause: float, summary: Summary
) -> None:
    """A discarded warm-up round, then ``rounds`` rounds; CPU time of the aggregator process
    (or, in-process, of this whole process) over the rounds only, pauses excluded."""
    spec = bench_spec()
    await ask(client, agg, spec)
    await asyncio.sleep(pause)
    if SQL is not None:
        SQL.take()
    cpu = 0.0
    for _ in range(rounds):
        before = cpu_seconds(agg.pid)
        summary.rounds.append(await ask(client, agg, spec))
        cpu += cpu_seconds(agg.pid) - before
        await asyncio.sleep(pause)  # every node back in its long-poll, idle
    summary.notes["cpu_ms"] = cpu / max(rounds, 1) * 1000
    if SQL is not None and agg.pid is None:  # statements per node and round, pauses included
        per = rounds * summary.nodes
        counts = SQL.take()
        summary.notes["sql_per_node_round"] = round(sum(counts.values()) / per, 1)
        summary.notes["sql_kinds"] = {k: round(v / per, 2) for k, v in counts.most_common(12)}


# -- simulated nodes ------------------------------------------------------------------------------


async def run_simulated(
    nodes: int,
    rounds: int,
    transport: str,
    db: str,
    work: Path,
    memory: bool,
    profile: Path | None,
) -> Summary:
    label = f"simulated, {'in-process (ASGI)' if transport == 'asgi' else 'aggregator process'}"
    summary = Summary(label, "simulated", transport, db, nodes)
    summary.notes["load_before"] = os.getloadavg()[0]
    agg = await init_aggregator(work / "aggregator", db)
    started = time.monotonic()
    identities = await enrol(agg.settings.database_url, nodes)
    summary.notes["enrol_s"] = time.monotonic() - started
    answers = Answers()
    answers.prepare(bench_spec())
    log = Log()
    async with serving(agg, transport, work) as agg:
        assert agg.new_client is not None
        analyst = agg.new_client()
        if agg.pid is not None:
            await asyncio.sleep(1.0)
            summary.notes["rss_idle_mb"] = status_kb(agg.pid, "VmRSS") / 1024
            summary.notes["fds_idle"] = open_fds(agg.pid)
        clients = [agg.new_client() for _ in identities] if transport == "process" else []
        sims = [
            SimNode(
                identity,
                agg.public,
                clients[i] if clients else analyst,
                answers,
                log,
                base="",
            )
            for i, identity in enumerate(identities)
        ]
        started = time.monotonic()
        async with running(sims):
            await wait_connected(analyst, agg, nodes, timeout=120)
            summary.notes["connect_s"] = time.monotonic() - started
            if memory and agg.pid is not None:
                summary.notes.update(await sample_memory(agg.pid, seconds=35))
            busy0 = log.busy
            profiler = None
            if profile is not None:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            if rounds:
                await run_rounds(analyst, agg, rounds, 0.3, summary)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(profile))
            summary.notes["sim_busy_ms"] = (log.busy - busy0) / (rounds + 1) * 1000 if rounds else 0
            if agg.pid is not None:
                summary.notes["rss_after_mb"] = status_kb(agg.pid, "VmRSS") / 1024
                summary.notes["hwm_mb"] = status_kb(agg.pid, "VmHWM") / 1024
        for client in clients:
            await client.aclose()
        if transport == "process":
            await analyst.aclose()
    summary.timings = log.timings
    summary.errors = log.errors
    return summary


async def sample_memory(pid: int, seconds: float) -> dict[str, Any]:
    """The aggregator's VmRSS once a second while every node's long-poll hangs."""
    samples, fds = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(status_kb(pid, "VmRSS") / 1024)
        fds.append(open_fds(pid))
        await asyncio.sleep(1.0)
    return {
        "rss_polling_mb": statistics.median(samples),
        "rss_polling_max_mb": max(samples),
        "fds_polling": statistics.median(fds),
    }


# -- real node processes --------------------------------------------------------------------------


KINDS = ("theatre", "museum", "cinema", "festival", "library")


def prepare_real_nodes(work: Path, count: int, rows: int) -> list[Any]:
    """Node homes with a generated export of ``rows`` tickets each, imported (as the demo)."""
    from node.home import init_home
    from node.identity import load_secret
    from node.ingest.generate import generate_export
    from node.ingest.importer import import_file
    from node.ingest.profile import load_profile
    from node.settings import ENV_FILE, NodeSettings
    from node.storage.db import make_engine, make_sessionmaker

    homes = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        home = work / f"node-{i + 1:03d}"
        settings = init_home(home, f"Bench {kind} {i + 1}")
        env = home / ENV_FILE
        text = env.read_text("utf-8").replace(
            "PUBLIEKSDATA_NODE_BUDGET_RHO=1.0", "PUBLIEKSDATA_NODE_BUDGET_RHO=100"
        )
        env.write_text(text, encoding="utf-8")
        export = home / "export.csv"
        generate_export(export, kind=kind, rows=rows, seed=YEAR + i, year=YEAR)  # type: ignore[arg-type]
        engine = make_engine(settings.database_url)
        try:
            import_file(
                make_sessionmaker(engine),
                load_secret(settings.secret_path),
                export,
                load_profile("generic"),
            )
        finally:
            engine.dispose()
        export.unlink()
        homes.append(NodeSettings.load(home))
    return homes


async def join_real(agg: Aggregator, homes: list[Any], verify: Any = True) -> None:
    from node.identity import load_signing_key
    from node.services.joining import join
    from node.storage.db import make_engine, make_sessionmaker

    headers = {"authorization": f"Bearer {agg.admin}"}
    async with httpx.AsyncClient(timeout=30, verify=verify) as client:
        for settings in homes:
            response = await client.post(
                f"{agg.base}/v1/admin/invites",
                json={"institution": settings.institution},
                headers=headers,
            )
            response.raise_for_status()
            engine = make_engine(settings.database_url)
            try:
                key = load_signing_key(settings.signing_key_path)
                await join(
                    settings,
                    make_sessionmaker(engine),
                    key,
                    agg.base,
                    response.json()["code"],
                    client,
                )
            finally:
                engine.dispose()


_next_port = 20_000 + os.getpid() % 5_000


def listen_port() -> int:
    """A free port below the ephemeral range (32768+ on Linux), so that the many outgoing
    connections of a large run cannot take it between this check and the node's bind."""
    global _next_port
    while True:
        _next_port += 1
        with contextlib.suppress(OSError), socket.socket() as probe:
            probe.bind(("127.0.0.1", _next_port))
            return _next_port


def start_real_node(settings: Any, logs: Path) -> Any:
    from publieksdata.processes import Service

    port = listen_port()
    log = logs / f"{settings.home.name}.log"
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.round_node",
                "--home",
                str(settings.home),
                "--port",
                str(port),
                "--timings",
                str(settings.home / "timings.jsonl"),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, **QUIET),
            cwd=Path(__file__).resolve().parent.parent,
            start_new_session=True,
        )
    return Service(settings.home.name, process, f"http://127.0.0.1:{port}", log)


def read_real_timings(homes: list[Any]) -> dict[str, list[Timing]]:
    timings: dict[str, list[Timing]] = {}
    for settings in homes:
        path = settings.home / "timings.jsonl"
        if not path.exists():
            continue
        for line in path.read_text("utf-8").splitlines():
            row = json.loads(line)
            timings.setdefault(row["round_id"], []).append(
                Timing(row["node_key_id"], row["round_id"], row["received"], row["ready"], 200)
            )
    return timings


async def run_real(nodes: int, rounds: int, db: str, work: Path, rows: int) -> Summary:
    from publieksdata.processes import Supervisor

    summary = Summary("real node processes", "real", "process", db, nodes)
    summary.notes["load_before"] = os.getloadavg()[0]
    started = time.monotonic()
    homes = await asyncio.to_thread(prepare_real_nodes, work, nodes, rows)
    summary.notes["prepare_s"] = time.monotonic() - started
    agg = await init_aggregator(work / "aggregator", db)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    async with serving(agg, "process", logs) as agg:
        assert agg.new_client is not None
        await join_real(agg, homes)
        with Supervisor() as supervisor:
            started = time.monotonic()
            services = [supervisor.add(start_real_node(s, logs)) for s in homes]
            for service in services:
                await asyncio.to_thread(service.wait_healthy, 180)
            async with agg.new_client() as analyst:
                await wait_connected(analyst, agg, nodes, timeout=180)
                summary.notes["start_s"] = time.monotonic() - started
                await run_rounds(analyst, agg, rounds, 0.5, summary)
            rss = [status_kb(s.process.pid, "VmRSS") / 1024 for s in services]
            summary.notes["node_rss_mb"] = statistics.median(rss)
            summary.notes["rss_after_mb"] = status_kb(agg.pid or 0, "VmRSS") / 1024
            summary.notes["load_after"] = os.getloadavg()[0]
            await asyncio.to_thread(supervisor.stop_all)
    summary.timings = read_real_timings(homes)
    return summary


# -- report ---------------------------------------------------------------------------------------


def ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value * 1000:,.0f}"


def pair(values: tuple[float, float]) -> str:
    return f"{ms(values[0])} / {ms(values[1])}"


def ratio(values: tuple[float, float]) -> str:
    return f"{values[0]:.2f} / {values[1]:.2f}"


def latency_table(stats: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| nodes | kind | db | rounds | round time ms p50 / p95 | slowest node ms p50 / p95 | "
        "overhead ms p50 / p95 | overhead target ms | overhead / target p50 / p95 | "
        "delivery ms p50 / p95 | delivery / 100 ms p50 / p95 |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stats:
        lines.append(
            f"| {s['nodes']:,} | {s['label']} | {s['db']} | {s['rounds']}"
            + (f" ({s['incomplete']} incomplete)" if s["incomplete"] else "")
            + f" | {pair(s['round'])} | {pair(s['slowest'])} | {pair(s['overhead'])} | "
            f"{ms(s['target'])} | {ratio(s['overhead_ratio'])} | {pair(s['delivery'])} | "
            f"{ratio(s['delivery_ratio'])} |"
        )
    return lines


def detail_table(stats: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| nodes | kind | db | POST /v1/rounds ms (median) | "
        "delivery from POST sent ms p50 / p95 | last node's delivery ms (median) | "
        "analyst GETs per round (median) | "
        "CPU per round ms (per node) | simulated nodes' own CPU per round ms | "
        "errors (nodes / analyst 5xx) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stats:
        busy = s.get("sim_busy_ms")
        cpu = s.get("cpu_ms", math.nan)
        lines.append(
            f"| {s['nodes']:,} | {s['label']} | {s['db']} | {ms(s['post'])} | "
            f"{pair(s['delivery_from_sent'])} | {ms(s['last_delivery'])} | {s['gets']:.0f} | "
            f"{cpu:,.0f} ({cpu / s['nodes']:.1f}) | "
            f"{'–' if busy is None else f'{busy:,.0f}'} | {s['errors']} / {s['failed_gets']} |"
        )
    return lines


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1024**2:.0f} GiB RAM, {platform.system()}; "
        f"load average before the run {load}"
    )


def versions() -> str:
    import sqlite3

    return (
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"SQLAlchemy {version('sqlalchemy')}, aiosqlite {version('aiosqlite')}, "
        f"uvicorn {version('uvicorn')}, httpx {version('httpx')}"
    )


# -- main -----------------------------------------------------------------------------------------


def raise_fd_limit(need: int) -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return f"ulimit -n {soft} (hard {hard})"
    new = hard if hard == resource.RLIM_INFINITY else min(hard, max(need, soft))
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return f"ulimit -n raised from {soft} to {new} (hard {hard})"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


async def main_async(args: argparse.Namespace) -> list[Summary]:
    summaries = []
    root = Path(tempfile.mkdtemp(prefix="round-bench-", dir=args.work))
    try:
        for db in args.db.split(","):
            for nodes in args.real:
                print(f"real: {nodes} node processes, {db} …", flush=True)
                work = root / f"real-{db}-{nodes}"
                rounds = args.rounds if nodes <= 100 else args.rounds_large
                summaries.append(await run_real(nodes, rounds, db, work, args.rows))
                print("  " + latency_table([summaries[-1].stats()])[-1], flush=True)
            for transport in args.transport.split(","):
                for nodes in args.nodes:
                    print(f"simulated: {nodes} nodes, {transport}, {db} …", flush=True)
                    work = root / f"sim-{transport}-{db}-{nodes}"
                    memory = args.memory and transport == "process" and nodes == max(args.nodes)
                    profile = args.profile if nodes == max(args.nodes) else None
                    rounds = args.rounds if nodes <= 100 else args.rounds_large
                    summaries.append(
                        await run_simulated(nodes, rounds, transport, db, work, memory, profile)
                    )
                    print("  " + latency_table([summaries[-1].stats()])[-1], flush=True)
            if args.memory and "process" not in args.transport.split(","):
                nodes = max(args.nodes)
                print(f"memory: {nodes} simulated nodes against the aggregator process …")
                work = root / f"memory-{db}-{nodes}"
                summaries.append(await run_simulated(nodes, 0, "process", db, work, True, None))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    return summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=_ints, default=[10, 50, 100, 1000])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--rounds-large", type=int, default=5, help="rounds for more than 100 nodes"
    )
    parser.add_argument(
        "--real", type=_ints, default=[], help="node counts to run as real node processes too"
    )
    parser.add_argument("--rows", type=int, default=2000, help="tickets per real node")
    parser.add_argument("--transport", default="asgi", help="asgi, process or both (comma)")
    parser.add_argument("--db", default="sqlite", help="sqlite, postgres or both (comma)")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument(
        "--count-sql", action="store_true", help="count the in-process aggregator's statements"
    )
    parser.add_argument("--profile", type=Path, help="cProfile the largest simulated run (ASGI)")
    parser.add_argument("--work", type=Path, default=None, help="parent of the scratch directory")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--json", type=Path, help="also write the summaries as JSON")
    args = parser.parse_args()
    if args.count_sql:
        if args.transport != "asgi":
            parser.error("--count-sql counts the shipped in-process aggregator only")
        global SQL
        SQL = StatementCounter()
        SQL.install()
    # An in-process aggregator logs every failed request; they are counted in the tables.
    logging.getLogger("publieksdata").setLevel(logging.CRITICAL)

    limit = raise_fd_limit(4 * max(args.nodes + args.real) + 256)
    header = [
        f"* Command: `python -m bench.round_bench {' '.join(sys.argv[1:])}`",
        f"* Machine: {machine()}; {limit}.",
        f"* Versions: {versions()}.",
        f"* Query: {bench_spec().title}: visits by artform for {YEAR}, "
        f"{bench_spec().cell_count} cells, ρ = {RHO}.",
    ]
    started = time.monotonic()
    summaries = asyncio.run(main_async(args))
    stats = [s.stats() for s in summaries if s.rounds]
    print()
    print("\n".join(header))
    print(f"* Wall time of the run: {time.monotonic() - started:.0f} s.")
    print()
    print("\n".join(latency_table(stats)))
    print()
    print("\n".join(detail_table(stats)))
    print()
    for s in summaries:
        extra = {k: v for k, v in s.stats().items() if k in s.notes}
        print(f"{s.nodes} {s.label} {s.db}: {json.dumps(extra, default=str)}")
        kinds = Counter(error.split(": ", 1)[-1][:60] for error in s.errors)
        for kind, count in kinds.most_common(6):
            print(f"  node-side error x{count}: {kind}")
    if args.json:
        args.json.write_text(json.dumps([s.stats() for s in summaries], indent=1, default=str))


if __name__ == "__main__":
    main()
