"""Aggregator throughput with two processes against one, on one PostgreSQL database.

For each process count it creates a fresh PostgreSQL database, enrols ``--nodes`` simulated nodes
(``bench.round_sim.SimNode``: the real protocol and signatures, precomputed answers) and starts
that many ``publieksdata aggregator serve`` processes on the same home directory. Node i holds
its long poll at process i mod P; the analyst asks at process 0 (so with two processes half of the
nodes are woken through PostgreSQL LISTEN/NOTIFY). One discarded warm-up round, then ``--rounds``
rounds of the small benchmark query, one after the other.

Reported per process count: round time (p50, p95), rounds per minute, and the aggregators' CPU
per round (summed over the processes). On this 2-core machine the simulated nodes run in the
benchmark's own process and compete with the aggregators for the same two cores, so the figure
shows whether a second process helps here, not what it would do on a bigger machine.

    python -m bench.scaleout_bench --nodes 100 --rounds 20
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from bench.round_bench import (
    QUIET,
    Summary,
    ask,
    bench_spec,
    cpu_seconds,
    init_aggregator,
    machine,
    percentile,
    wait_connected,
)
from bench.round_sim import Answers, Log, SimNode, enrol, running


async def run(processes: int, nodes: int, rounds: int, work: Path) -> dict[str, float]:
    from publieksdata.processes import free_port, start

    agg = await init_aggregator(work / "aggregator", "postgresql")
    identities = await enrol(agg.settings.database_url, nodes)
    services = []
    for i in range(processes):
        port = free_port()
        service = start(
            f"aggregator-{i + 1}",
            ["aggregator", "serve", "--home", str(agg.settings.home), "--port", str(port)],
            port,
            work / f"aggregator-{i + 1}.log",
            QUIET,
        )
        services.append(service)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    try:
        for service in services:
            await asyncio.to_thread(service.wait_healthy, 60)
        agg.base = services[0].url
        agg.pid = services[0].process.pid
        answers = Answers()
        answers.prepare(bench_spec())
        log = Log()
        clients = [
            httpx.AsyncClient(base_url=services[i % processes].url, limits=limits, timeout=60)
            for i in range(nodes)
        ]
        sims = [
            SimNode(identity, agg.public, clients[i], answers, log, base="")
            for i, identity in enumerate(identities)
        ]
        summary = Summary(f"{processes} process(es)", "simulated", "process", "postgresql", nodes)
        async with (
            httpx.AsyncClient(base_url=agg.base, limits=limits, timeout=60) as analyst,
            running(sims),
        ):
            await wait_connected(analyst, agg, nodes, timeout=120)
            spec = bench_spec()
            await ask(analyst, agg, spec)  # warm-up
            await asyncio.sleep(0.3)
            pids = [s.process.pid for s in services]
            cpu_before = sum(cpu_seconds(pid) for pid in pids)
            started = time.monotonic()
            for _ in range(rounds):
                summary.rounds.append(await ask(analyst, agg, spec))
            elapsed = time.monotonic() - started
            cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        for client in clients:
            await client.aclose()
    finally:
        for service in services:
            await asyncio.to_thread(service.stop)
    times = [r.closed - r.sent for r in summary.rounds]
    complete = sum(1 for r in summary.rounds if r.answered == r.total)
    return {
        "rounds": float(len(times)),
        "complete": float(complete),
        "p50": percentile(times, 0.5),
        "p95": percentile(times, 0.95),
        "per_minute": len(times) / elapsed * 60,
        "cpu_ms": cpu / max(len(times), 1) * 1000,
        "errors": float(len(log.errors)),
    }


async def main_async(args: argparse.Namespace) -> None:
    results: dict[int, dict[str, float]] = {}
    for processes in (1, 2):
        with tempfile.TemporaryDirectory(prefix=f"pd-scale-{processes}-") as tmp:
            results[processes] = await run(processes, args.nodes, args.rounds, Path(tmp))
    print(f"\nMachine: {machine()}\n")
    print(f"{args.nodes} simulated nodes, {args.rounds} rounds, PostgreSQL\n")
    print("| processes | complete | round p50 | round p95 | rounds/min | aggregator CPU/round |")
    print("|---|---|---|---|---|---|")
    for processes, r in results.items():
        print(
            f"| {processes} | {r['complete']:.0f}/{r['rounds']:.0f} | {r['p50'] * 1000:.0f} ms | "
            f"{r['p95'] * 1000:.0f} ms | {r['per_minute']:.1f} | {r['cpu_ms']:.0f} ms |"
        )
    ratio = results[2]["per_minute"] / results[1]["per_minute"]
    print(f"\nThroughput, 2 processes / 1: {ratio:.2f}x")
    print(f"Median round time, 2 / 1: {results[2]['p50'] / results[1]['p50']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
