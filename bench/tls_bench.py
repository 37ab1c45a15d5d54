"""A round over TLS against the same round over plain HTTP, with real processes on loopback.

For each transport it prepares ``--nodes`` real nodes (``bench.round_node``, generated exports
imported as in the demo), a fresh aggregator (``publieksdata aggregator serve``), joins the nodes
with invite codes and runs one discarded warm-up round and ``--rounds`` measured rounds, exactly
as ``bench.round_bench --real`` does. With TLS the aggregator serves HTTPS itself (uvicorn's TLS,
an ECDSA P-256 certificate from a test CA) and every node pins that CA
(``PUBLIEKSDATA_NODE_AGGREGATOR_CA_FILE``); the analyst's client verifies it too. Both runs use
the same machine, node count, data and query; the ratio TLS/plain of the median round time is the
figure that matters (absolute times on a shared 2-core machine are noisy).

    python -m bench.tls_bench --nodes 10 --rounds 20
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import tempfile
import time
from pathlib import Path

import httpx

from bench.round_bench import (
    QUIET,
    Summary,
    init_aggregator,
    join_real,
    machine,
    percentile,
    prepare_real_nodes,
    read_real_timings,
    run_rounds,
    start_real_node,
    wait_connected,
)


def _tls_files(work: Path) -> tuple[Path, Path, Path]:
    from tests.e2e.test_tls import make_ca

    certs = work / "certs"
    certs.mkdir()
    return make_ca(certs)


async def run(transport: str, nodes: int, rounds: int, rows: int, work: Path) -> Summary:
    from node.settings import ENV_FILE, NodeSettings
    from publieksdata.processes import Supervisor, free_port, start

    summary = Summary(f"{transport}, real node processes", "real", transport, "sqlite", nodes)
    homes = await asyncio.to_thread(prepare_real_nodes, work, nodes, rows)
    agg = await init_aggregator(work / "aggregator", "sqlite")
    verify: ssl.SSLContext | bool = True
    scheme = "http"
    if transport == "tls":
        ca, cert, key = _tls_files(work)
        with (agg.settings.home / "aggregator.env").open("a", encoding="utf-8") as env:
            env.write(f"PUBLIEKSDATA_AGGREGATOR_TLS_CERTFILE={cert}\n")
            env.write(f"PUBLIEKSDATA_AGGREGATOR_TLS_KEYFILE={key}\n")
        for i, settings in enumerate(homes):
            with (settings.home / ENV_FILE).open("a", encoding="utf-8") as env:
                env.write(f"PUBLIEKSDATA_NODE_AGGREGATOR_CA_FILE={ca}\n")
            homes[i] = NodeSettings.load(settings.home)
        verify = ssl.create_default_context(cafile=str(ca))
        scheme = "https"
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    port = free_port()
    service = start(
        "aggregator",
        ["aggregator", "serve", "--home", str(agg.settings.home), "--port", str(port)],
        port,
        logs / "aggregator.log",
        QUIET,
    )
    service.url = f"{scheme}://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(service.wait_healthy, 60, verify)
        agg.pid, agg.base = service.process.pid, service.url
        await join_real(agg, homes, verify)
        with Supervisor() as supervisor:
            for s in homes:
                supervisor.add(start_real_node(s, logs))
            async with httpx.AsyncClient(base_url=agg.base, timeout=60, verify=verify) as analyst:
                await wait_connected(analyst, agg, nodes, timeout=180)
                await run_rounds(analyst, agg, rounds, 0.5, summary)
            await asyncio.to_thread(supervisor.stop_all)
    finally:
        await asyncio.to_thread(service.stop)
    summary.timings = read_real_timings(homes)
    return summary


def _line(summary: Summary) -> dict[str, float]:
    rows = summary.per_round()
    totals = [r[0] for r in rows]
    return {
        "rounds": len(rows),
        "p50": percentile(totals, 0.5),
        "p95": percentile(totals, 0.95),
        "overhead_p50": percentile([r[2] for r in rows], 0.5),
        "cpu_ms": summary.notes.get("cpu_ms", float("nan")),
    }


async def main_async(args: argparse.Namespace) -> None:
    results: dict[str, dict[str, float]] = {}
    for transport in ("plain", "tls"):
        with tempfile.TemporaryDirectory(prefix=f"pd-tls-{transport}-") as tmp:
            started = time.monotonic()
            summary = await run(transport, args.nodes, args.rounds, args.rows, Path(tmp))
            results[transport] = _line(summary)
            results[transport]["wall_s"] = time.monotonic() - started
            if summary.errors:
                print(f"{transport}: errors: {summary.errors[:3]}")
    print(f"\nMachine: {machine()}\n")
    print("| transport | rounds | round p50 | round p95 | overhead p50 | aggregator CPU/round |")
    print("|---|---|---|---|---|---|")
    for transport, r in results.items():
        print(
            f"| {transport} | {r['rounds']:.0f} | {r['p50'] * 1000:.0f} ms | "
            f"{r['p95'] * 1000:.0f} ms | {r['overhead_p50'] * 1000:.0f} ms | "
            f"{r['cpu_ms']:.0f} ms |"
        )
    ratio = results["tls"]["p50"] / results["plain"]["p50"]
    cpu = results["tls"]["cpu_ms"] / results["plain"]["cpu_ms"]
    print(f"\nTLS / plain, median round time: {ratio:.2f}x; aggregator CPU per round: {cpu:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2000, help="tickets per node's export")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
