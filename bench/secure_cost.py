"""Secure aggregation cost (issue 4): secure against independent rounds, measured in one run.

For each node count and mode a fresh aggregator (own home, SQLite database) runs as a real
``publieksdata aggregator serve`` process; simulated nodes (``bench.round_sim``, the real wire
protocol) are enrolled through its invite services and long-poll it over loopback TCP. The
analyst asks the standard report ``volume`` (visits by month and artform, ρ = 0.1) in mode
``independent`` or ``secure`` (threshold: the aggregator's default ⌈2N/3⌉): one discarded
warm-up round, then ``--rounds`` rounds one after another.

How the simulated nodes answer:

* **independent**: a ``QueryAnswer`` whose noisy values are drawn afresh for every task by the
  node's own ``release()`` (OpenDP), signed.
* **secure**: the node's real ``node.services.secure.SecureParty`` (X25519, HKDF,
  ChaCha20-Poly1305, Shamir splitting, masking, OpenDP noise shares, signing), in
  :class:`BenchParty`, which leaves out the database only: the exact aggregate is precomputed
  and the ledger is a number in memory. The database work left out (one aggregate query, one
  ledger read and one committed debit per round) is the same in both modes.
* **relay** (``--relay``, for 1,000 nodes, where the real protocol needs about a second of CPU
  per node and round and 1,000 nodes would share one core): :class:`RelayParty` sends every
  phase message the aggregator would get from real nodes — signed, of the real sizes, passing
  every check the aggregator makes, with Shamir shares that reconstruct each node's committed
  self-mask seed — but skips the node-side cryptography the aggregator cannot see (sealed shares
  are random bytes, no pair masks). The aggregator's work is the real thing; the nodes' is
  measured separately by ``--isolated``.

``--isolated N`` runs the phases of one real node (``BenchParty`` behind ``SecureSimNode``, the
same code as in the rounds, aggregator-signed tasks included) against N − 1 synthetic peers with
real keys and real sealed shares, without any aggregator, and reports its CPU per phase.

Measured per round: *round time*, from just before ``POST /v1/rounds`` to the analyst's response
showing the round closed (``GET /v1/rounds/{id}?wait=30`` as ``aggregator.client``); the
aggregator process's CPU (user + system, /proc) over the round; per node and round, the thread
CPU time (``time.thread_time``) of its task handling (verify the task, answer, sign), summed over
a secure round's four phases. The aggregator's peak RSS is its VmHWM at the end of the run (one
fresh process per node count and mode). All simulated nodes share this process and its event
loop, so their CPU adds up on one core: *nodes in parallel* estimates the round time had every
node its own machine, as round time − Σ over phases (all nodes' CPU − the slowest node's CPU).

    python -m bench.secure_cost --nodes 10,100 --relay 300,1000 --isolated 10,100,300,1000 \\
        --relay-cost 100,300,1000 --cap 420 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import json
import logging
import math
import os
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bench.round_bench import (
    Aggregator,
    cpu_seconds,
    init_aggregator,
    machine,
    raise_fd_limit,
    serving,
    status_kb,
    versions,
    wait_connected,
)
from bench.round_sim import Answers, Identity, Log, SimNode, enrol, running
from node.privacy.distributed import SecureCalibration, secure_calibrations
from node.privacy.noise import add_noise, zcdp_to_epsilon
from node.privacy.release import release
from node.services.answering import Answerer
from node.services.policy import check_policy
from node.services.secure import SecureParty, Session, _measure, _Refused
from node.settings import NodeSettings
from protocol import secagg, secgraph
from protocol.messages import (
    SECAGG_ACCEPT,
    SECAGG_KEYS,
    SECAGG_MASKED,
    SECAGG_REVEAL,
    SECAGG_SHARES,
    TASK,
    BudgetStatus,
    MeasureResult,
    Phase,
    PolicySummary,
    PrivacySpent,
    QueryRequest,
    RefusalReason,
    SecAggAccept,
    SecAggKeys,
    SecAggMasked,
    SecAggReveal,
    SecAggShares,
    Task,
)
from protocol.query import Measure, Mode, QuerySpec
from protocol.reports import report, year_period
from protocol.signing import Envelope, SigningKey, public_key_to_text, sign, verify_once

REPORT = "volume"
YEAR = 2025
RHO = 0.1
DEADLINE_SECONDS = 120  # as round_bench; a secure round shares it over its four phases
RELAY_DEADLINE_SECONDS = 1800
WAIT_SECONDS = 30  # the analyst's long-poll, as aggregator.client
PAUSE_SECONDS = 0.3
TARGET_FACTOR, TARGET_EXTRA = 1.5, 0.200  # secure ≤ 1.5 × independent + 200 ms at 100 nodes
TARGET_NODES = 100


def bench_spec(mode: Mode) -> QuerySpec:
    return report(REPORT).build(period=year_period(YEAR), rho=RHO, mode=mode)


def exact_values(spec: QuerySpec) -> dict[Measure, list[int]]:
    """The node's exact aggregate, as ``round_sim.Answers`` makes it up."""
    return {m: [100 + i % 37 for i in range(spec.cell_count)] for m in spec.measures}


def node_settings() -> NodeSettings:
    """One node's settings: defaults, except a budget for many rounds and the largest worst-case
    limit (at 1,000 nodes t = 667 and one share alone gives ρ ≈ 67; the default limit is 10)."""
    return NodeSettings(
        home=Path("bench-secure-node"), budget_rho=100, secure_max_worst_rho=1000, connect=False
    )


# -- the node side --------------------------------------------------------------------------------


class BenchParty(SecureParty):
    """The real secure party without a database: the exact aggregate is precomputed and the
    ledger is a number in memory. Every phase's cryptography, noise and signing is real."""

    def __init__(self, settings: NodeSettings, key: SigningKey) -> None:
        answerer = Answerer(settings, cast(Any, None), cast(Any, None), key)
        super().__init__(answerer)
        self.budget = BudgetStatus(
            period=answerer.budget_period(), cap_rho=settings.budget_rho, spent_rho=0.0
        )

    def _check_budget(self, spec: QuerySpec) -> None:
        # SecureParty._check_budget with the ledger read replaced by the in-memory budget.
        if self.budget.spent_rho + spec.privacy.rho_charged > self.budget.cap_rho * (1 + 1e-9):
            raise _Refused(RefusalReason.BUDGET_EXHAUSTED, "the privacy budget does not cover it")

    def _release(self, session: Session, seeds: dict[str, bytes], bad: tuple[str, ...]) -> bytes:
        # SecureParty._release without the database: the aggregate is precomputed, the debit is
        # in memory. Policy, calibration, OpenDP noise shares, masking and signing are real.
        spec = session.spec
        refusal = check_policy(spec, self.settings)
        if refusal is not None:
            raise _Refused(refusal.reason, refusal.message)
        calibrations = secure_calibrations(spec, session.threshold)
        now = datetime.now(UTC)
        cost = spec.privacy.rho_charged
        self._check_budget(spec)
        exact = exact_values(spec)
        values: list[int] = []
        for measure in spec.measures:
            values.extend(add_noise(list(exact[measure]), calibrations[measure].calibration()))
        assert session.b is not None
        masked = secagg.masked_input(
            secagg.encode(values),
            round_id=session.round_id,
            me=self.key.key_id,
            b=session.b,
            pair_seeds=seeds,
        )
        self.budget = self.budget.model_copy(update={"spent_rho": self.budget.spent_rho + cost})
        message = SecAggMasked(
            round_id=session.round_id,
            query_id=spec.query_id,
            query_hash=spec.digest(),
            catalogue_version=spec.catalogue_version,
            answered_at=now,
            node_key_id=self.key.key_id,
            threshold=session.threshold,
            length=len(values),
            vector=secagg.to_text(masked),
            measures=tuple(_measure(c, True) for c in calibrations.values()),
            privacy=PrivacySpent(
                rho=cost,
                epsilon=zcdp_to_epsilon(cost, spec.privacy.delta),
                delta=spec.privacy.delta,
            ),
            rho_worst=math.fsum(c.rho_worst for c in calibrations.values()),
            budget=self.budget,
            noise=True,
            bad_shares=bad,
        )
        return _body(SECAGG_MASKED, message, self.key, now=now)


def _body(message_type: str, message: Any, key: SigningKey, **kwargs: Any) -> bytes:
    envelope = sign(message_type, message.model_dump(mode="json"), key, **kwargs)
    return envelope.model_dump_json().encode("utf-8")


class FreshAnswers(Answers):
    """Independent answers with noise drawn afresh for every task (``round_sim.Answers`` draws it
    once), so that both modes pay for their OpenDP noise."""

    def measures(self, spec: QuerySpec) -> tuple[MeasureResult, ...]:
        return release(spec, exact_values(spec), noise=True)


@dataclass
class CpuLog:
    """Thread CPU seconds of each simulated node's task handling: round → phase → node → s."""

    rounds: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)

    def add(self, round_id: str, phase: str, node: str, seconds: float) -> None:
        by_node = self.rounds.setdefault(round_id, {}).setdefault(phase, {})
        by_node[node] = by_node.get(node, 0.0) + seconds

    def per_node(self, round_id: str) -> list[float]:
        totals: dict[str, float] = {}
        for by_node in self.rounds.get(round_id, {}).values():
            for node, seconds in by_node.items():
                totals[node] = totals.get(node, 0.0) + seconds
        return list(totals.values())

    def total(self, round_id: str) -> float:
        return sum(self.per_node(round_id))

    def serial_excess(self, round_id: str) -> float:
        """Σ over phases of (all nodes' CPU − the slowest node's): what running the nodes one
        after another on one core adds to a round, compared with one machine each."""
        return sum(
            sum(by_node.values()) - max(by_node.values())
            for by_node in self.rounds.get(round_id, {}).values()
            if by_node
        )

    def phases(self, round_id: str) -> dict[str, float]:
        """Median CPU per node of each phase."""
        return {
            phase: statistics.median(by_node.values())
            for phase, by_node in self.rounds.get(round_id, {}).items()
            if by_node
        }


class SecureSimNode(SimNode):
    """A simulated node that answers secure phases with a secure party (``BenchParty`` or
    ``RelayParty``) and independent tasks with fresh noise; it times its own CPU per task."""

    def __init__(self, *args: Any, party: Any, cpu: CpuLog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.party = party
        self.cpu = cpu
        self.policy = PolicySummary(
            max_cells=20_000, max_rho_per_query=0.5, secure_max_worst_rho=1000
        )

    def _verified(self, document: dict[str, Any]) -> tuple[Envelope, Task]:
        """The checks ``SimNode._answer`` and ``node.connector`` make before answering."""
        envelope = Envelope.model_validate(document)
        task = Task.model_validate(self.verifier.verify(envelope, TASK))
        if envelope.key_id != self.aggregator_key_id or task.node_key_id != self.key.key_id:
            raise ValueError("the task is not for this node or not from its aggregator")
        if task.deadline <= datetime.now(UTC):
            raise ValueError("the task is past its deadline")
        return envelope, task

    def _answer(self, document: dict[str, Any]) -> tuple[Task, bytes]:
        payload = document.get("payload", {})
        phase = str(payload.get("phase", Phase.QUERY.value))
        started = time.thread_time()
        try:
            if phase == Phase.QUERY.value:
                task, body = super()._answer(document)
            else:
                envelope, task = self._verified(document)
                body = self.party.handle(task, envelope.key_id)
                if phase == Phase.MASK.value:
                    self.budget = self.party.budget
        finally:
            seconds = time.thread_time() - started
            self.cpu.add(str(payload.get("round_id", "")), phase, self.key.key_id, seconds)
        if body.startswith(b'{"type":"refusal"'):
            self.cpu.refusals.append(f"{self.identity.node_id} {phase}: {body[:400]!r}")
        return task, body


# -- relay nodes: real messages for the aggregator, without the node-side cryptography ------------


class RelayWorld:
    """What the relay nodes of one run share: the Shamir polynomial g (g(0) = 0, degree t − 1,
    t the threshold of each neighbourhood) added to every secret, and every node's self-mask
    seed, so that each node can hand out shares of any neighbour's seed that reconstruct exactly
    as real shares would (at the positions ``protocol.secgraph`` gives)."""

    def __init__(self) -> None:
        self.seeds: dict[str, int] = {}
        self._g: dict[tuple[int, int], list[int]] = {}
        self._calibrations: dict[tuple[str, int], dict[Measure, SecureCalibration]] = {}

    def g(self, nodes: int, threshold: int) -> list[int]:
        """g(x) for x = 0 … nodes (a list indexed by x)."""
        key = (nodes, threshold)
        if key not in self._g:
            coefficients = [0] + [
                int.from_bytes(os.urandom(66), "big") % secagg.PRIME for _ in range(threshold - 1)
            ]
            values = []
            for x in range(nodes + 1):
                y = 0
                for c in reversed(coefficients):
                    y = (y * x + c) % secagg.PRIME
                values.append(y)
            self._g[key] = values
        return self._g[key]

    def calibrations(self, spec: QuerySpec, threshold: int) -> dict[Measure, SecureCalibration]:
        key = (spec.digest(), threshold)
        if key not in self._calibrations:
            self._calibrations[key] = secure_calibrations(spec, threshold)
        return self._calibrations[key]


@dataclass
class _RelayRound:
    threshold: int
    ring: secgraph.Ring | None = None
    b: bytes = b""


class RelayParty:
    """Phase messages a real node would send, as the aggregator sees them, made cheaply."""

    SEALED_BYTES = 12 + 4 + 2 * secagg.SHARE_BYTES + 16  # nonce, share pair, tag

    def __init__(self, key: SigningKey, world: RelayWorld) -> None:
        self.key = key
        self.world = world
        self.rounds: dict[str, _RelayRound] = {}
        self.budget = BudgetStatus(period="bench", cap_rho=100.0, spent_rho=0.0)

    def handle(self, task: Task, requester_key_id: str) -> bytes:
        spec = task.request.spec
        me = self.key.key_id
        assert task.threshold is not None
        state = self.rounds.setdefault(task.round_id, _RelayRound(task.threshold))
        if task.phase is Phase.ANNOUNCE:  # take part at once (automatic approval)
            accept = SecAggAccept(
                round_id=task.round_id,
                query_id=spec.query_id,
                query_hash=spec.digest(),
                node_key_id=me,
            )
            return _body(SECAGG_ACCEPT, accept, self.key)
        if task.phase is Phase.KEYS:
            keys = SecAggKeys(
                round_id=task.round_id,
                query_id=spec.query_id,
                query_hash=spec.digest(),
                node_key_id=me,
                c_public=secagg.public_text(secagg.new_private_key()),
                s_public=secagg.public_text(secagg.new_private_key()),
            )
            return _body(SECAGG_KEYS, keys, self.key)
        if task.phase is Phase.SHARES:
            assert task.setup is not None
            state.ring = ring = secgraph.Ring.of(task.setup.ring, task.threshold)
            state.b = os.urandom(32)
            self.world.seeds[me] = int.from_bytes(state.b, "big")
            neighbours = ring.neighbours(me)
            raw = os.urandom(self.SEALED_BYTES * len(neighbours))
            sealed = {
                peer: _b64(raw[i * self.SEALED_BYTES : (i + 1) * self.SEALED_BYTES])
                for i, peer in enumerate(neighbours)
            }
            shares = SecAggShares(
                round_id=task.round_id,
                query_id=spec.query_id,
                node_key_id=me,
                sealed=sealed,
                b_commitment=hashlib.sha256(state.b).hexdigest(),
            )
            return _body(SECAGG_SHARES, shares, self.key)
        if task.phase is Phase.MASK:
            calibrations = self.world.calibrations(spec, task.threshold)
            exact = exact_values(spec)
            values = [v for m in spec.measures for v in exact[m]]
            # The self-mask only: the sum over the nodes is then exactly the sum of the values.
            length = len(values)
            masked = secagg.encode(values) + secagg.prg(
                secagg.self_seed(state.b, task.round_id, me), length
            )
            cost = spec.privacy.rho_charged
            self.budget = self.budget.model_copy(update={"spent_rho": self.budget.spent_rho + cost})
            message = SecAggMasked(
                round_id=task.round_id,
                query_id=spec.query_id,
                query_hash=spec.digest(),
                catalogue_version=spec.catalogue_version,
                answered_at=datetime.now(UTC),
                node_key_id=me,
                threshold=task.threshold,
                length=length,
                vector=secagg.to_text(np.asarray(masked, dtype=np.uint64)),
                measures=tuple(_measure(c, True) for c in calibrations.values()),
                privacy=PrivacySpent(rho=cost, epsilon=1.0, delta=spec.privacy.delta),
                rho_worst=math.fsum(c.rho_worst for c in calibrations.values()),
                budget=self.budget,
            )
            return _body(SECAGG_MASKED, message, self.key)
        assert task.unmask is not None and state.ring is not None
        ring, shape = state.ring, state.ring.shape
        g = self.world.g(shape.holders, shape.threshold)
        survivors = set(task.unmask.survivors)
        reveal = SecAggReveal(
            round_id=task.round_id,
            query_id=spec.query_id,
            node_key_id=me,
            x=ring.index[me] + 1,
            b_shares={
                peer: str((self.world.seeds[peer] + g[ring.x(peer, me)]) % secagg.PRIME)
                for peer in (me, *ring.neighbours(me))
                if peer in survivors
            },
            s_shares={},
        )
        del self.rounds[task.round_id]
        return _body(SECAGG_REVEAL, reveal, self.key)


def _b64(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


# -- rounds ----------------------------------------------------------------------------------------


@dataclass
class Record:
    round_id: str
    seconds: float
    aggregator_cpu: float
    answered: int
    total: int
    failure: str | None
    max_z: float  # largest |estimate − N·exact| / standard error over the cells: masks cancelled?
    gets: int  # the analyst's GETs
    phases: dict[str, float]


@dataclass
class Run:
    nodes: int
    mode: str  # independent | secure
    nodes_are: str  # simulated (real protocol) | relay
    threshold: int | None = None
    records: list[Record] = field(default_factory=list)
    cpu: CpuLog = field(default_factory=CpuLog)
    errors: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def complete(self) -> list[Record]:
        return [r for r in self.records if r.answered == r.total and r.failure is None]

    def stats(self) -> dict[str, Any]:
        done = self.complete()
        ids = [r.round_id for r in done]
        node_cpu = [s for i in ids for s in self.cpu.per_node(i)]
        parallel = [r.seconds - self.cpu.serial_excess(r.round_id) for r in done]
        phases: dict[str, list[float]] = {}
        for i in ids:
            for phase, seconds in self.cpu.phases(i).items():
                phases.setdefault(phase, []).append(seconds)
        return {
            "nodes": self.nodes,
            "mode": self.mode,
            "nodes_are": self.nodes_are,
            "threshold": self.threshold,
            "rounds": len(done),
            "incomplete": len(self.records) - len(done),
            "round_s": _median([r.seconds for r in done]),
            "parallel_s": _median(parallel),
            "node_cpu_ms": _median(node_cpu) * 1000,
            "node_cpu_max_ms": max(node_cpu, default=math.nan) * 1000,
            "phase_cpu_ms": {p: _median(v) * 1000 for p, v in phases.items()},
            "nodes_total_cpu_s": _median([self.cpu.total(i) for i in ids]),
            "aggregator_cpu_s": _median([r.aggregator_cpu for r in done]),
            "max_z": max((r.max_z for r in done), default=math.nan),
            "gets": _median([float(r.gets) for r in done]),
            "phases_seen_s": done[len(done) // 2].phases
            if done
            else (self.records[0].phases if self.records else {}),
            "unfinished_cpu_s": [r.aggregator_cpu for r in self.records if r not in done],
            "failures": [r.failure for r in self.records if r.failure],
            "errors": len(self.errors),
            "refusals": len(self.cpu.refusals),
            **self.notes,
        }


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


@dataclass
class Asked:
    round_id: str
    seconds: float
    result: dict[str, Any]
    gets: int
    phases: dict[str, float]  # phase → seconds from the POST when the analyst first saw it
    capped: bool = False
    retries: int = 0  # GETs repeated after the server closed the connection


async def ask(
    client: httpx.AsyncClient, agg: Aggregator, spec: QuerySpec, deadline: int, cap: float
) -> Asked:
    """As ``round_bench.ask`` (POST, then long-poll GETs until closed), with this run's deadline;
    notes when each secure phase was first seen, and gives up waiting after ``cap`` seconds."""
    headers = {"authorization": f"Bearer {agg.analyst}"}
    body = {"spec": spec.model_dump(mode="json"), "deadline_seconds": deadline}
    sent = time.monotonic()
    response = await client.post("/v1/rounds", json=body, headers=headers)
    if response.status_code != 201:
        raise RuntimeError(f"round refused: {response.status_code} {response.text[:300]}")
    result = response.json()
    asked = Asked(result["round_id"], 0.0, result, 0, {})
    while result["state"] != "closed":
        elapsed = time.monotonic() - sent
        if result.get("phase"):
            asked.phases.setdefault(result["phase"], elapsed)
        if elapsed > cap:
            asked.capped = True
            break
        coverage = result["coverage"]
        wait = max(1.0, min(WAIT_SECONDS, cap - elapsed))
        try:
            response = await client.get(
                f"/v1/rounds/{result['round_id']}",
                params={"wait": round(wait), "seen": coverage["total"] - coverage["pending"]},
                headers=headers,
                timeout=wait + 300,
            )
        except (httpx.RemoteProtocolError, httpx.ReadError):
            # A keep-alive connection the server closed as the request went out (uvicorn's
            # 5 s keep-alive under load); the GET is idempotent, so ask again.
            asked.retries += 1
            await asyncio.sleep(0.2)
            continue
        asked.gets += 1
        if response.status_code >= 500:
            await asyncio.sleep(0.5)
            continue
        response.raise_for_status()
        result = response.json()
    asked.seconds = time.monotonic() - sent
    asked.result = result
    return asked


async def run_mode(
    nodes: int,
    mode: Mode,
    rounds: int,
    warm_up: bool,
    relay: bool,
    work: Path,
    cap: float = math.inf,
    memory_limit_gb: float = 8.0,
) -> Run:
    run = Run(nodes, mode.value, "relay" if relay else "simulated")
    spec = bench_spec(mode)
    deadline = RELAY_DEADLINE_SECONDS if relay else DEADLINE_SECONDS
    agg = await init_aggregator(work / "aggregator", "sqlite")
    identities = await enrol(agg.settings.database_url, nodes)
    settings = node_settings()
    world = RelayWorld()
    log = Log()
    async with serving(agg, "process", work) as agg:
        assert agg.new_client is not None and agg.pid is not None
        # A shared machine: the aggregator's allocations fail (HTTP 500) rather than the OOM
        # killer choosing a victim.
        limit = int(memory_limit_gb * 1024**3)
        resource.prlimit(agg.pid, resource.RLIMIT_AS, (limit, limit))
        analyst = agg.new_client()
        clients = [agg.new_client() for _ in identities]
        sims = [
            _sim(identity, agg.public, client, log, run.cpu, settings, world, relay)
            for identity, client in zip(identities, clients, strict=True)
        ]
        started = time.monotonic()
        async with running(sims):
            await wait_connected(analyst, agg, nodes, timeout=300)
            run.notes["connect_s"] = time.monotonic() - started
            run.notes["rss_connected_mb"] = status_kb(agg.pid, "VmRSS") / 1024
            run.notes["load_before"] = os.getloadavg()[0]
            if warm_up:
                await ask(analyst, agg, spec, deadline, cap)
                await asyncio.sleep(PAUSE_SECONDS)
            for _ in range(rounds):
                before = cpu_seconds(agg.pid)
                asked = await ask(analyst, agg, spec, deadline, cap)
                cpu = cpu_seconds(agg.pid) - before
                result = asked.result
                coverage = result["coverage"]
                run.threshold = result.get("threshold")
                failure = result.get("failure")
                if asked.capped:
                    failure = f"still open after {cap:.0f} s, in phase {result.get('phase')}"
                run.records.append(
                    Record(
                        asked.round_id,
                        asked.seconds,
                        cpu,
                        coverage["answered"],
                        coverage["total"],
                        failure,
                        max_z(spec, result),
                        asked.gets,
                        asked.phases,
                    )
                )
                print(
                    f"    round {len(run.records)}: {asked.seconds:.2f} s, aggregator CPU "
                    f"{cpu:.2f} s, {coverage['answered']}/{coverage['total']} answered, "
                    f"max |z| {run.records[-1].max_z:.1f}, {asked.gets} GETs, phases seen at "
                    + json.dumps({k: round(v, 1) for k, v in asked.phases.items()})
                    + (f", failed: {failure}" if failure else "")
                    + (f", {asked.retries} GETs retried" if asked.retries else ""),
                    flush=True,
                )
                if asked.capped:
                    break
                await asyncio.sleep(PAUSE_SECONDS)
            run.notes["hwm_mb"] = status_kb(agg.pid, "VmHWM") / 1024
            run.notes["rss_after_mb"] = status_kb(agg.pid, "VmRSS") / 1024
            run.notes["load_after"] = os.getloadavg()[0]
        for client in clients:
            await client.aclose()
        await analyst.aclose()
    run.errors = log.errors
    return run


def max_z(spec: QuerySpec, result: dict[str, Any]) -> float:
    """How far the released sum lies from the true sum, in standard errors (about 3–4 at most
    for 195 honest cells; astronomically large if the masks did not cancel)."""
    exact = exact_values(spec)
    answered = result["coverage"]["answered"]
    worst = 0.0
    for estimate in result.get("measures", []):
        truth = exact[Measure(estimate["measure"])]
        for value, se, true in zip(
            estimate["estimates"], estimate["standard_errors"], truth, strict=True
        ):
            worst = max(worst, abs(value - answered * true) / max(se, 1e-9))
    return worst if result.get("measures") else math.nan


def _sim(
    identity: Identity,
    aggregator_key: Ed25519PublicKey,
    client: httpx.AsyncClient,
    log: Log,
    cpu: CpuLog,
    settings: NodeSettings,
    world: RelayWorld,
    relay: bool,
) -> SecureSimNode:
    party = RelayParty(identity.key, world) if relay else BenchParty(settings, identity.key)
    return SecureSimNode(
        identity, aggregator_key, client, FreshAnswers(), log, party=party, cpu=cpu
    )


# -- one node in isolation ----------------------------------------------------------------------


@dataclass
class _Peer:
    key: SigningKey
    c_key: Any
    keys: dict[str, Any]


def _peer(round_id: str, spec: QuerySpec) -> _Peer:
    key = SigningKey.generate()
    c_key, s_key = secagg.new_private_key(), secagg.new_private_key()
    message = SecAggKeys(
        round_id=round_id,
        query_id=spec.query_id,
        query_hash=spec.digest(),
        node_key_id=key.key_id,
        c_public=secagg.public_text(c_key),
        s_public=secagg.public_text(s_key),
    )
    envelope = sign(SECAGG_KEYS, message.model_dump(mode="json"), key)
    return _Peer(key, c_key, envelope.model_dump(mode="json"))


def isolated(nodes: int, repeats: int, profile: cProfile.Profile | None = None) -> dict[str, float]:
    """Median thread CPU ms per phase of one real node against ``nodes − 1`` synthetic peers."""
    per_phase: dict[str, list[float]] = {}
    for _ in range(repeats):
        for phase, seconds in _isolated_round(nodes, profile).items():
            per_phase.setdefault(phase, []).append(seconds * 1000)
    out = {phase: statistics.median(values) for phase, values in per_phase.items()}
    out["total"] = sum(out.values())
    return out


def _isolated_round(nodes: int, profile: cProfile.Profile | None) -> dict[str, float]:
    """One secure round of one node; the peers' parts (keys, sealed shares) are made outside the
    timed code. Returns thread CPU seconds per phase."""
    round_id = f"isolated-{nodes}-{os.urandom(6).hex()}"
    spec = bench_spec(Mode.SECURE).model_copy(update={"query_id": f"pd-{round_id}"})
    threshold = secagg.default_threshold(nodes)
    agg_key = SigningKey.generate()
    peers = [_peer(round_id, spec) for _ in range(nodes - 1)]
    me = SigningKey.generate()
    cpu = CpuLog()
    node = SecureSimNode(
        Identity("isolated", "Isolated", me),
        agg_key.public,
        cast(Any, None),
        FreshAnswers(),
        Log(),
        party=BenchParty(node_settings(), me),
        cpu=cpu,
    )

    def answer(phase: Phase, **extra: Any) -> dict[str, Any]:
        payload = Task(
            task_id=f"{round_id}.{phase.value}",
            round_id=round_id,
            node_key_id=me.key_id,
            deadline=datetime.now(UTC) + timedelta(minutes=10),
            request=QueryRequest(spec=spec, analyst="bench"),
            phase=phase,
            threshold=threshold,
            **extra,
        ).model_dump(mode="json", exclude_none=True)
        document = sign(TASK, payload, agg_key).model_dump(mode="json")
        if profile is not None:
            profile.enable()
        try:
            _task, body = node._answer(document)
        finally:
            if profile is not None:
                profile.disable()
        reply: dict[str, Any] = json.loads(body)
        if reply["type"] == "refusal":
            raise RuntimeError(f"the isolated node refused: {reply['payload']}")
        return reply

    mine = answer(Phase.KEYS)
    listed = [
        {
            "node_key_id": p.key.key_id,
            "public_key": public_key_to_text(p.key.public),
            "keys": p.keys,
        }
        for p in peers
    ]
    listed.append(
        {"node_key_id": me.key_id, "public_key": public_key_to_text(me.public), "keys": mine}
    )
    publics = {
        p.key.key_id: (p.keys["payload"]["c_public"], p.keys["payload"]["s_public"]) for p in peers
    }
    publics[me.key_id] = (mine["payload"]["c_public"], mine["payload"]["s_public"])
    order = secgraph.ring_order(round_id, publics)
    ring = secgraph.Ring.of(order, threshold)
    near = set(ring.neighbours(me.key_id)) | {me.key_id}
    answer(
        Phase.SHARES,
        setup={"peers": [p for p in listed if p["node_key_id"] in near], "ring": order},
    )
    c_public = mine["payload"]["c_public"]
    sealed = {}
    for p in peers:
        if p.key.key_id not in near:
            continue
        pair = secagg.SharePair(
            p.key.key_id,
            me.key_id,
            ring.x(p.key.key_id, me.key_id),
            int.from_bytes(os.urandom(64), "big"),
            int.from_bytes(os.urandom(64), "big"),
        )
        shared = secagg.agree(p.c_key, c_public)
        key = secagg.share_key(shared, round_id, p.key.key_id, me.key_id)
        sealed[p.key.key_id] = secagg.seal(pair, key, round_id)
    answer(Phase.MASK, mask={"sealed": sealed})
    answer(Phase.UNMASK, unmask={"survivors": sorted(order)})
    return cpu.phases(round_id)


def relay_cost(nodes: int, samples: int = 5) -> dict[str, float]:
    """CPU seconds of the aggregator's own secure-round work for one round of ``nodes`` nodes,
    outside HTTP and the database: the functions of ``aggregator.rounds.secure`` and the
    signing, verifying and JSON encoding of the phase messages. Per-node steps are timed on
    ``samples`` nodes and multiplied by ``nodes``; per-round steps run once."""
    from aggregator.rounds import secure as agg_secure
    from aggregator.rounds import unmask as agg_unmask

    spec = bench_spec(Mode.SECURE).model_copy(update={"query_id": "pd-relay-cost"})
    round_id = "relay-cost-" + os.urandom(4).hex()
    threshold = secagg.default_threshold(nodes)
    agg_key = SigningKey.generate()
    world = RelayWorld()
    keys = [SigningKey.generate() for _ in range(nodes)]
    parties = [RelayParty(k, world) for k in keys]
    request = QueryRequest(spec=spec, analyst="bench").model_dump(mode="json")

    def task(key: SigningKey, phase: Phase, **extra: Any) -> Task:
        return Task(
            task_id=f"t-{key.key_id}.{phase.value}",
            round_id=round_id,
            node_key_id=key.key_id,
            deadline=datetime.now(UTC) + timedelta(minutes=30),
            request=QueryRequest(spec=spec, analyst="bench"),
            phase=phase,
            threshold=threshold,
            **extra,
        )

    keys_bodies = [
        p.handle(task(k, Phase.KEYS), agg_key.key_id) for k, p in zip(keys, parties, strict=True)
    ]
    members = [
        agg_secure.Member(
            f"t-{k.key_id}",
            k.key_id,
            public_key_to_text(k.public),
            "pending",
            body,
            None,
            None,
            None,
        )
        for k, body in zip(keys, keys_bodies, strict=True)
    ]
    out: dict[str, float] = {}
    roster: list[str] = []

    def timed(name: str, function: Callable[[], Any], times: int = 1) -> Any:
        started = time.process_time()
        result = function()
        out[name] = out.get(name, 0.0) + (time.process_time() - started) * times
        return result

    def per_node(name: str, function: Callable[[int], Any]) -> None:
        started = time.process_time()
        for i in range(samples):
            function(i)
        out[name] = (time.process_time() - started) / samples * nodes

    def deliver(payload: dict[str, Any]) -> None:  # pending_for: sign; the route: JSON
        json.dumps({"tasks": [sign(TASK, payload, agg_key).model_dump(mode="json")]})

    def accept(raw: bytes, phase: Phase, key: SigningKey) -> None:  # accept + judge
        envelope = Envelope.model_validate_json(raw)
        payload = verify_once(envelope, envelope.type, key.public)
        agg_secure.judge(
            phase,
            envelope.type,
            payload,
            round_id=round_id,
            spec=spec,
            threshold=threshold,
            key_id=key.key_id,
            roster=roster,
            accept_exact=False,
        )

    base = {
        "task_id": "t",
        "round_id": round_id,
        "deadline": "2030-01-01T00:00:00+00:00",
        "request": request,
        "threshold": threshold,
    }
    per_node(
        "keys: deliver", lambda i: deliver({**base, "node_key_id": keys[i].key_id, "phase": "keys"})
    )
    per_node("keys: accept", lambda i: accept(keys_bodies[i], Phase.KEYS, keys[i]))
    roster.extend(timed("keys: ring order (once)", lambda: agg_secure.ring_of(round_id, members)))
    setup = timed(
        "shares: build the peer list (once)", lambda: agg_secure.setup_data(roster, members)
    )

    def setup_of(i: int) -> dict[str, Any]:
        return agg_secure.setup_for(setup, keys[i].key_id, threshold)

    per_node(
        "shares: deliver",
        lambda i: deliver(
            {**base, "node_key_id": keys[i].key_id, "phase": "shares", "setup": setup_of(i)}
        ),
    )
    shares = [
        p.handle(task(k, Phase.SHARES, setup=setup_of(i)), "")
        for i, (k, p) in enumerate(zip(keys, parties, strict=True))
    ]
    per_node("shares: accept", lambda i: accept(shares[i], Phase.SHARES, keys[i]))
    members = [
        m.__class__(m.task_id, m.key_id, m.public_key, m.status, m.keys, s, None, None)
        for m, s in zip(members, shares, strict=True)
    ]
    sealed = timed(
        "mask: sort the sealed shares by recipient (once per call)",
        lambda: agg_secure.sealed_by_recipient(members),
    )
    per_node(
        "mask: deliver",
        lambda i: deliver(
            {
                **base,
                "node_key_id": keys[i].key_id,
                "phase": "mask",
                "mask": {"sealed": sealed[keys[i].key_id]},
            }
        ),
    )
    masked = [
        p.handle(task(k, Phase.MASK, mask={"sealed": {}}), "")
        for k, p in zip(keys, parties, strict=True)
    ]
    per_node("mask: accept", lambda i: accept(masked[i], Phase.MASK, keys[i]))
    survivors = {"survivors": roster}
    per_node(
        "unmask: deliver",
        lambda i: deliver(
            {**base, "node_key_id": keys[i].key_id, "phase": "unmask", "unmask": survivors}
        ),
    )
    reveals = [
        p.handle(task(k, Phase.UNMASK, unmask=survivors), "")
        for k, p in zip(keys, parties, strict=True)
    ]
    per_node("unmask: accept", lambda i: accept(reveals[i], Phase.UNMASK, keys[i]))
    members = [
        m.__class__(m.task_id, m.key_id, m.public_key, m.status, m.keys, m.shares, v, r)
        for m, v, r in zip(members, masked, reveals, strict=True)
    ]
    outcome = timed(
        "unmask: reconstruct and sum (once)",
        lambda: agg_unmask.reconstruct(round_id, spec, threshold, roster, members),
    )
    if outcome.answered != nodes:
        raise RuntimeError("the relay round did not reconstruct")
    out["total"] = sum(out.values())
    out["bytes: shares message"] = len(shares[0])
    out["bytes: shares task"] = len(
        json.dumps(sign(TASK, {**base, "setup": setup_of(0)}, agg_key).model_dump(mode="json"))
    )
    out["bytes: reveal message"] = len(reveals[0])
    return out


def top_functions(profile: cProfile.Profile, count: int = 12) -> list[str]:
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    stats.sort_stats("tottime").print_stats(count)
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return lines[start : start + count + 1]


# -- report -------------------------------------------------------------------------------------


def _f(value: float, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def cost_table(stats: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| nodes | mode | nodes are | t | rounds | round s (median) | est. round s, nodes in "
        "parallel | node CPU ms per round (median / max) | all nodes' CPU per round s | "
        "aggregator CPU per round s | aggregator peak RSS MB (VmHWM) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stats:
        rounds = str(s["rounds"]) + (f" ({s['incomplete']} incomplete)" if s["incomplete"] else "")
        lines.append(
            f"| {s['nodes']:,} | {s['mode']} | {s['nodes_are']} | {s['threshold'] or '–'} | "
            f"{rounds} | {_f(s['round_s'])} | {_f(s['parallel_s'])} | "
            f"{_f(s['node_cpu_ms'], 1)} / {_f(s['node_cpu_max_ms'], 1)}"
            + (
                f" (relay); one real node: {_f(s['isolated_node_ms'], 0)} | "
                if "isolated_node_ms" in s
                else " | "
            )
            + f"{_f(s['nodes_total_cpu_s'])} | {_f(s['aggregator_cpu_s'])} | "
            f"{_f(s.get('hwm_mb', math.nan), 0)} |"
        )
    return lines


def ratio_table(stats: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| nodes | secure / independent: round time | … est. nodes in parallel | "
        "… aggregator CPU | … node CPU | target: secure ≤ 1.5 × independent + 0.2 s "
        "(measured round time) |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    by_nodes: dict[int, dict[str, dict[str, Any]]] = {}
    for s in stats:
        by_nodes.setdefault(s["nodes"], {})[s["mode"]] = s
    for nodes, modes in sorted(by_nodes.items()):
        if "secure" not in modes or "independent" not in modes:
            continue
        sec, ind = modes["secure"], modes["independent"]
        limit = TARGET_FACTOR * ind["round_s"] + TARGET_EXTRA
        verdict = "PASS" if sec["round_s"] <= limit else "FAIL"
        check = f"{_f(sec['round_s'])} s vs limit {_f(limit)} s: {verdict}"
        if nodes != TARGET_NODES:
            check += " (target is for 100 nodes)"
        lines.append(
            f"| {nodes:,} | {_f(sec['round_s'] / ind['round_s'])} | "
            f"{_f(sec['parallel_s'] / ind['parallel_s'])} | "
            f"{_f(sec['aggregator_cpu_s'] / ind['aggregator_cpu_s'])} | "
            f"{_f(sec['node_cpu_ms'] / ind['node_cpu_ms'], 1)} | {check} |"
        )
    return lines


def phase_lines(
    stats: list[dict[str, Any]], isolated_runs: dict[int, dict[str, float]]
) -> list[str]:
    lines = [
        "| nodes | where | keys | shares | mask | unmask | total |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for s in stats:
        if s["mode"] != "secure" or not s["phase_cpu_ms"]:
            continue
        p = s["phase_cpu_ms"]
        lines.append(
            f"| {s['nodes']:,} | in rounds ({s['nodes_are']}) | "
            + " | ".join(_f(p.get(ph, math.nan), 1) for ph in ("keys", "shares", "mask", "unmask"))
            + f" | {_f(sum(p.values()), 1)} |"
        )
    for nodes, p in sorted(isolated_runs.items()):
        lines.append(
            f"| {nodes:,} | one node in isolation | "
            + " | ".join(_f(p.get(ph, math.nan), 1) for ph in ("keys", "shares", "mask", "unmask"))
            + f" | {_f(p['total'], 1)} |"
        )
    return lines


def cost_lines(costs: dict[int, dict[str, float]]) -> list[str]:
    sizes = sorted(costs)
    lines = [
        "| step | " + " | ".join(f"{n:,} nodes" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for step in costs[sizes[0]]:
        digits = 0 if step.startswith("bytes") else 2
        lines.append(f"| {step} | " + " | ".join(_f(costs[n][step], digits) for n in sizes) + " |")
    return lines


# -- main ---------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


async def main_async(args: argparse.Namespace, root: Path) -> list[Run]:
    runs = []
    plan: list[tuple[int, bool]] = [(n, False) for n in args.nodes] + [
        (n, True) for n in args.relay
    ]
    for nodes, relay in plan:
        large = nodes > 100
        rounds = args.rounds or (5 if nodes <= 10 else 3 if nodes <= 100 else 1)
        for mode in (Mode.INDEPENDENT, Mode.SECURE):
            kind = "relay" if relay and mode is Mode.SECURE else "simulated"
            print(f"{nodes} nodes, {mode.value} ({kind}) …", flush=True)
            work = root / f"{nodes}-{mode.value}-{kind}"
            runs.append(
                await run_mode(
                    nodes,
                    mode,
                    rounds,
                    warm_up=not large,
                    relay=relay and mode is Mode.SECURE,
                    work=work,
                    cap=args.cap,
                    memory_limit_gb=args.memory_limit_gb,
                )
            )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=_ints, default=[10, 100])
    parser.add_argument("--relay", type=_ints, default=[], help="node counts with relay nodes")
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="rounds per mode (default 5 / 3 / 1 up to 10 / 100 / more nodes)",
    )
    parser.add_argument("--isolated", type=_ints, default=[], help="one node against N − 1 peers")
    parser.add_argument("--isolated-repeats", type=int, default=3)
    parser.add_argument(
        "--relay-cost", type=_ints, default=[], help="the aggregator's protocol work for N nodes"
    )
    parser.add_argument(
        "--cap", type=float, default=600, help="stop waiting for a round after this many seconds"
    )
    parser.add_argument(
        "--memory-limit-gb", type=float, default=8.0, help="address-space limit of the aggregator"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the largest isolated node")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    logging.getLogger("publieksdata").setLevel(logging.CRITICAL)
    limit = raise_fd_limit(4 * max(args.nodes + args.relay + [1]) + 256)
    started = time.monotonic()
    header = [
        f"* Command: `python -m bench.secure_cost {' '.join(sys.argv[1:])}`",
        f"* Machine: {machine()}; `nproc` {os.cpu_count()}; {limit}.",
        f"* Versions: {versions()}.",
        f"* Query: report `{REPORT}` for {YEAR}, {bench_spec(Mode.SECURE).cell_count} cells, "
        f"ρ = {RHO}; deadline {DEADLINE_SECONDS} s ({RELAY_DEADLINE_SECONDS} s with relay nodes).",
    ]
    print("\n".join(header), flush=True)
    isolated_runs: dict[int, dict[str, float]] = {}
    profile_lines: list[str] = []
    for nodes in args.isolated:
        print(f"one node in isolation against {nodes - 1} peers …", flush=True)
        profiler = cProfile.Profile() if args.profile and nodes == max(args.isolated) else None
        isolated_runs[nodes] = isolated(nodes, args.isolated_repeats, profiler)
        print("  " + json.dumps({k: round(v, 1) for k, v in isolated_runs[nodes].items()}))
        if profiler is not None:
            profile_lines = top_functions(profiler)
    costs: dict[int, dict[str, float]] = {}
    for nodes in args.relay_cost:
        print(f"the aggregator's protocol work for {nodes} nodes …", flush=True)
        costs[nodes] = relay_cost(nodes)
        print(f"  {costs[nodes]['total']:.2f} s", flush=True)
    root = Path(tempfile.mkdtemp(prefix="secure-cost-", dir=args.work))
    try:
        runs = asyncio.run(main_async(args, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    stats = [r.stats() for r in runs]
    for s in stats:
        real = isolated_runs.get(s["nodes"])
        if s["nodes_are"] == "relay" and real is not None:  # the real node's CPU, in parallel
            s["isolated_node_ms"] = real["total"]
            s["parallel_s"] += (real["total"] - s["node_cpu_ms"]) / 1000
    print()
    print("\n".join(header))
    print(f"* Wall time of the run: {time.monotonic() - started:.0f} s.")
    print()
    print("\n".join(cost_table(stats)))
    print()
    print("\n".join(ratio_table(stats)))
    print()
    print("Node CPU ms per phase (median over nodes and rounds; isolated: median of repeats):")
    print()
    print("\n".join(phase_lines(stats, isolated_runs)))
    for run, s in zip(runs, stats, strict=True):
        keep = (
            "failures",
            "refusals",
            "errors",
            "max_z",
            "gets",
            "phases_seen_s",
            "unfinished_cpu_s",
            "isolated_node_ms",
        )
        extra = {k: v for k, v in s.items() if k in run.notes or k in keep}
        print(f"{run.nodes} {run.mode} ({run.nodes_are}): {json.dumps(extra, default=str)}")
        for error in run.errors[:5]:
            print(f"  node error: {error[:160]}")
    if costs:
        print()
        print("The aggregator's protocol work per secure round, CPU s (no HTTP, no database):")
        print()
        print("\n".join(cost_lines(costs)))
    if profile_lines:
        print()
        print(f"cProfile of one node at {max(args.isolated)} nodes (all phases, by own time):")
        print("\n".join(profile_lines))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"runs": stats, "isolated": isolated_runs, "relay_cost": costs},
                indent=1,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
