"""Public site benchmark (issue 5): a release page under load, target ≥ 500 requests/s with
p95 < 50 ms on 2 cores.

A fresh aggregator home (SQLite) gets closed secure rounds for the four standard reports of
the built-in recipe ``standard-2025`` (visits by month × artform, reach by age band, visits and
reach by province, reach by segment; 10 institutions each), and the release is published with
the real ``publish``. The aggregator then runs as a real ``publieksdata aggregator serve``
process (one uvicorn worker), and ``wrk`` (Debian package ``wrk``, C, one thread per core)
loads the release page over loopback for ``--seconds`` per URL with ``--connections`` open
connections. A Lua hook makes wrk print its exact p50/p95/p99. For comparison, the same wrk run
against the aggregator's ``/v1/health``, an ordinary FastAPI JSON route (validated response
model, no cache), shows what the same server does without the site's cache of rendered bytes.

    python -m bench.site_bench --seconds 15 --connections 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from aggregator.home import init_home, load_signing_key
from aggregator.releases import recipe as recipes
from aggregator.releases.publish import publish
from aggregator.storage.db import make_async_engine, make_async_sessionmaker
from bench.publish_bench import closed_rounds
from bench.round_bench import machine
from protocol.query import Mode
from protocol.reports import report, year_period
from publieksdata.processes import free_port, start

NODES = 10
TARGET_RPS, TARGET_P95_MS = 500.0, 50.0
LUA = """
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %d, \\"seconds\\": %.3f, \\"errors\\": %d, "
    .. "\\"non2xx\\": %d, \\"p50_ms\\": %.3f, \\"p95_ms\\": %.3f, \\"p99_ms\\": %.3f}\\n",
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout, summary.errors.status,
    latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3))
end
"""


async def prepare(url: str, key_path: Path) -> str:
    """Rounds for the standard recipe, then publish it; the release's slug."""
    recipe = recipes.load("standard-2025")
    names = list(recipe.reports_to_ask())
    specs = [report(n).build(period=year_period(2025), rho=0.1, mode=Mode.SECURE) for n in names]
    asked = dict(zip(names, await closed_rounds(url, specs, seed=11), strict=True))
    engine = make_async_engine(url)
    async with make_async_sessionmaker(engine)() as session, session.begin():
        sealed = await publish(
            session, load_signing_key(key_path), recipe, asked, datetime.now(UTC)
        )
    await engine.dispose()
    return sealed.slug


def wrk(url: str, seconds: int, connections: int, script: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    )  # fmt: skip
    line = next(x for x in out.stdout.splitlines() if x.startswith("JSON "))
    result: dict[str, Any] = json.loads(line[5:])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    root = Path(tempfile.mkdtemp(prefix="site-bench-"))
    results: dict[str, dict[str, Any]] = {}
    try:
        settings = init_home(root / "aggregator", "Site benchmark")
        slug = asyncio.run(prepare(settings.database_url, settings.signing_key_path))
        script = root / "report.lua"
        script.write_text(LUA, encoding="utf-8")
        port = free_port()
        service = start(
            "aggregator",
            ["aggregator", "serve", "--home", str(settings.home), "--port", str(port)],
            port,
            root / "aggregator.log",
            {"PUBLIEKSDATA_LOG_LEVEL": "WARNING"},
        )
        try:
            service.wait_healthy(60)
            base = service.url
            page = f"{base}/nl/releases/{slug}"
            size = len(httpx.get(page, timeout=30).content)
            targets = {
                "release page (nl)": page,
                "release page (en)": f"{base}/en/releases/{slug}",
                "index (nl)": f"{base}/nl/",
                "/v1/health (API route, for comparison)": f"{base}/v1/health",
            }
            for name, url in targets.items():
                wrk(url, 2, args.connections, script)  # warm-up: caches, connections
                time.sleep(1)
                results[name] = wrk(url, args.seconds, args.connections, script)
                print(f"  {name}: {json.dumps(results[name])}", flush=True)
        finally:
            service.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    command = (
        f"python -m bench.site_bench --seconds {args.seconds} --connections {args.connections}"
    )
    print(f"* Command: `{command}`")
    print(f"* Machine: {machine()}; wrk: 2 threads; aggregator: 1 uvicorn worker, SQLite")
    print(
        f"* Release page: {size / 1024:.0f} KB of HTML (the annual recipe's tables, charts inline)"
    )
    print()
    print("| URL | requests/s | p50 ms | p95 ms | p99 ms | errors / non-2xx | target |")
    print("|---|---:|---:|---:|---:|---|---|")  # fmt: skip
    for name, r in results.items():
        ok = r["rps"] >= TARGET_RPS and r["p95_ms"] < TARGET_P95_MS and not r["errors"]
        verdict = "PASS" if ok else "FAIL"
        if "health" in name:
            verdict = "(comparison)"
        print(
            f"| {name} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['errors']} / {r['non2xx']} | {verdict} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
