"""Sector pseudonym benchmark (issue 15): the threshold OPRF for N distinct e-mail addresses.

Starts ``--holders`` real key holders (default 3, threshold 2) as ``publieksdata keyholder
serve`` processes on loopback, enrols one node with them, and derives the sector values of
``--n`` distinct addresses (default 300,000) for one year with the node's own
``SectorPseudonymiser``: blinding, one signed batch request per 4,996 elements and 4 probes to
t holders at once, answer and probe checks, Lagrange combination and unblinding. It reports

* per key holder: the CPU seconds its process spent (user + system, from /proc) while serving
  the run, and the elements it evaluated (the target is at most 2 minutes of CPU per holder for
  300,000 addresses);
* for the node: wall time and the CPU of this process (the node's side of an import).

    python -m bench.oprf_bench --n 300000 --write-results
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from keyholder.home import init_home as init_keyholder
from keyholder.services.enrolment import create_invite
from keyholder.share import ceremony
from keyholder.storage.db import make_sessionmaker, make_sync_engine
from node.ingest.sector import SectorPseudonymiser
from node.services.sector_enrolment import join
from protocol.signing import SigningKey
from publieksdata.processes import Service, Supervisor, free_port, start

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Sector pseudonym (issue 15)"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its waited-for children, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _invite(database_url: str) -> str:
    engine = make_sync_engine(database_url)
    try:
        with make_sessionmaker(engine).begin() as session:
            code, _ = create_invite(session, "Bench", datetime.now(UTC), timedelta(hours=1))
    finally:
        engine.dispose()
    return code


def run(n: int, threshold: int, holders: int, work: Path) -> dict[str, object]:
    with Supervisor() as supervisor:
        services: list[tuple[Service, str]] = []
        for share in ceremony(threshold, holders):
            home = work / f"kh{share.index}"
            settings = init_keyholder(home, share, f"Holder {share.index}")
            port = free_port()
            env = {
                "PUBLIEKSDATA_LOG_LEVEL": "warning",
                "PUBLIEKSDATA_KEYHOLDER_RATE_LIMIT_ELEMENTS": str(2 * n + 1000),  # probes too
            }
            service = start(
                f"kh{share.index}",
                ["keyholder", "serve", "--home", str(home), "--port", str(port)],
                port,
                work / f"kh{share.index}.log",
                env,
            )
            services.append((supervisor.add(service), _invite(settings.database_url)))
        for service, _ in services:
            service.wait_healthy(60)
        node_home = work / "node"
        node_home.mkdir()
        key = SigningKey.generate()
        with httpx.Client(timeout=30) as client:
            for service, code in services:
                _, config = join(node_home, "Bench", key, service.url, code, client)
        identifiers = [f"bezoeker{i:07d}@voorbeeld{i % 97}.nl" for i in range(n)]
        before = {s.name: _cpu_seconds(s.process.pid) for s, _ in services}
        wall, cpu = time.perf_counter(), time.process_time()
        with SectorPseudonymiser(config, key) as sector:
            values = sector.values(identifiers, 2025)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        after = {s.name: _cpu_seconds(s.process.pid) for s, _ in services}
        assert len(set(values)) == n
        return {
            "n": n,
            "threshold": threshold,
            "holders": holders,
            "node_wall": wall,
            "node_cpu": cpu,
            "holder_cpu": {name: after[name] - before[name] for name in before},
        }


def report(result: dict[str, object]) -> str:
    holder_cpu = result["holder_cpu"]
    assert isinstance(holder_cpu, dict)
    n = int(str(result["n"]))
    rows = "\n".join(
        f"| {name} | {seconds:.1f} s | {n / seconds if seconds else 0:,.0f} |"
        for name, seconds in holder_cpu.items()
    )
    node_wall = float(str(result["node_wall"]))
    node_cpu = float(str(result["node_cpu"]))
    load = os.getloadavg()[0]
    return f"""{SECTION}

`python -m bench.oprf_bench --n {n} --write-results` on {platform.machine()},
{os.cpu_count()} cores (load average {load:.1f} at the end: the machine was shared), Python
{platform.python_version()}, libsodium through rbcl; {result["holders"]} key holders as real
`publieksdata keyholder serve` processes on loopback, threshold {result["threshold"]}, batches of
4,996 elements and 4 probes, every answer signed and checked. {n:,} distinct e-mail addresses,
one year.

| key holder process | CPU for the run | addresses per CPU second |
|---|---|---|
{rows}

Node side (blind, ask {result["threshold"]} holders at once, check, combine, unblind):
{node_wall:.1f} s wall, {node_cpu:.1f} s CPU of the node process. The target was at most 2
minutes of CPU per key holder. The holder that is not asked (the node asks the first t that
answer) spends next to nothing (its enrolment). A holder's work per element is one validity
check and one scalar multiplication (about 55 µs); the rest is JSON, the signature checks and
HTTP.
"""


def write_results(text: str) -> None:
    current = RESULTS.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(SECTION) + r".*?(?=\n## |\Z)", re.S)
    if pattern.search(current):
        current = pattern.sub(text.rstrip() + "\n", current)
    else:
        current = current.rstrip() + "\n\n" + text
    RESULTS.write_text(current, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300_000)
    parser.add_argument("--threshold", type=int, default=2)
    parser.add_argument("--holders", type=int, default=3)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.n, args.threshold, args.holders, Path(tmp))
    text = report(result)
    print(text)
    if args.write_results:
        write_results(text)


if __name__ == "__main__":
    main()
