"""Deduplicated reach (issue 15): accuracy and cost of the reach round's mathematics.

A synthetic sector: ``--persons`` distinct people over ``--nodes`` institutions. A person visits
1 + Geometric institutions (mean about 1.9, as in ../shared/reach.md), chosen with Zipf-like
popularity (weight 1/rank^0.8), with Geometric visits at each. Pseudonyms are random 16-byte
strings (what the sector OPRF yields). Then:

1. **Noise off, the whole round** at m = 2^``--log2-buckets``: every node hashes its people and
   secret-shares its presence vector (``protocol.reach.buckets``/``shares``); helper A sums the
   explicit shares, helper B expands and sums the seeds, each appends dummies and both shuffle
   (``shuffle``); the aggregator rebuilds the histogram and estimates. Reach and the
   institutions-per-person bins are compared with the pooled distinct counts. CPU is process
   time of this one process, measured per party; upload is the explicit share plus the seed.
2. **Noise on**, ρ = ``--rho`` per query: ``--reps`` repetitions with a fresh round salt (new
   collisions) and fresh OpenDP dummies from both helpers, at the histogram level (the round's
   arithmetic is exact, step 1 shows it); the empirical relative SD of reach and of each bin,
   next to the SD the 95% interval reports.

    python -m bench.reach_accuracy                          # 1M persons, 90 nodes, 2^24, ρ 0.05
    python -m bench.reach_accuracy --persons 100000 --nodes 20 --log2-buckets 20 --reps 5
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from protocol.reach import buckets, estimate, histogram, shares, shuffle
from protocol.reach.calibration import HELPERS, plan, unsafe_noise_off
from protocol.reach.layout import Kind, Layout
from protocol.reach.noise import draw_dummy_counts

SECRET = os.urandom(32)


@dataclass
class Sector:
    pseudonyms: list[bytes]
    institutions: npt.NDArray[np.int64]  # per person
    members: list[npt.NDArray[np.int64]]  # per node: indices of its persons


def sector(persons: int, nodes: int, seed: int) -> Sector:
    rng = np.random.default_rng(seed)
    k = np.minimum(rng.geometric(0.52, persons), nodes)
    logw = -0.8 * np.log(np.arange(1, nodes + 1))
    rows: list[npt.NDArray[np.int64]] = []
    cols: list[npt.NDArray[np.int64]] = []
    for start in range(0, persons, 100_000):
        stop = min(start + 100_000, persons)
        # Weighted sampling without replacement: the top k_p of log w + Gumbel noise.
        keys = logw + rng.gumbel(size=(stop - start, nodes))
        rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
        r, c = np.nonzero(rank < k[start:stop, None])
        rows.append(r + start)
        cols.append(c)
    person, node = np.concatenate(rows), np.concatenate(cols)
    order = np.argsort(node, kind="stable")
    person, node = person[order], node[order]
    bounds = np.searchsorted(node, np.arange(nodes + 1))
    members = [person[bounds[i] : bounds[i + 1]] for i in range(nodes)]
    raw = rng.bytes(16 * persons)
    pseudonyms = [raw[16 * i : 16 * i + 16] for i in range(persons)]
    return Sector(pseudonyms, k.astype(np.int64), members)


def truth(s: Sector) -> list[int]:
    k = s.institutions
    return [k.size, *(int((k == v).sum()) for v in (1, 2, 3)), int((k >= 4).sum())]


def cpu() -> float:
    return time.process_time()


def full_round(s: Sector, layout: Layout) -> dict[str, Any]:
    """Noise off: nodes → helpers → aggregator, timing each party."""
    salt = os.urandom(16)
    total_a = np.zeros(layout.buckets, dtype=layout.dtype)
    seeds: list[tuple[tuple[int, ...], bytes]] = []
    node_cpu, upload, helper_a = [], [], 0.0
    for idx in s.members:
        t = cpu()
        vec = buckets.count_vector([s.pseudonyms[i] for i in idx], salt, layout)
        ns = shares.split(vec, layout)
        node_cpu.append(cpu() - t)
        upload.append(ns.explicit.nbytes + len(ns.seed))
        t = cpu()
        total_a = shares.sum_explicit([((), total_a), ((), ns.explicit)], layout)
        helper_a += cpu() - t
        seeds.append(((), ns.seed))
    t = cpu()
    total_b = shares.sum_seeds(seeds, layout)
    helper_b = cpu() - t
    off = unsafe_noise_off(layout)
    none = np.zeros(0, dtype=layout.dtype)
    t = cpu()
    out_a = shuffle.helper_output(total_a, none, 0, 0, SECRET, b"bench", layout)
    shuffle_a = cpu() - t
    t = cpu()
    out_b = shuffle.helper_output(total_b, none, 0, 1, SECRET, b"bench", layout)
    shuffle_b = cpu() - t
    # The dummies a helper would add at ρ = 0.05 (drawn and built, not added: noise is off here).
    t = cpu()
    shuffle.dummy_rows(draw_dummy_counts(plan(layout, 0.05)), layout)
    dummies = cpu() - t
    t = cpu()
    hist = histogram.noisy_histogram(out_a, out_b, layout, off)
    f = estimate.frequency(hist, layout.buckets, 0.0, top=4)
    aggregator = cpu() - t
    return {
        "node_cpu": node_cpu,
        "upload": upload,
        "helper_a": helper_a + shuffle_a,
        "helper_b": helper_b + shuffle_b,
        "shuffle": max(shuffle_a, shuffle_b),
        "dummies": dummies,
        "aggregator": aggregator,
        "estimates": [f.reach, *f.bins, f.tail],
        "records": sum(len(m) for m in s.members),
        "largest": max(len(m) for m in s.members),
    }


def noisy_reps(s: Sector, layout: Layout, rho: float, reps: int) -> dict[str, Any]:
    """Fresh salt and fresh OpenDP dummies per repetition, at the histogram level."""
    p = plan(layout, rho)
    est, sds = [], []
    for _ in range(reps):
        idx = buckets.bucket_indices(s.pseudonyms, os.urandom(16), layout)
        values = np.bincount(idx, weights=s.institutions, minlength=layout.buckets)
        hist = histogram.value_counts(values.astype(np.int64) & 0xFF, layout)
        noisy = hist + draw_dummy_counts(p) + draw_dummy_counts(p) - HELPERS * p.shift
        f = estimate.frequency(noisy, layout.buckets, p.noise_variance, top=4)
        ivs = [f.reach, *f.bins, f.tail]
        est.append([iv.estimate for iv in ivs])
        sds.append([iv.sd for iv in ivs])
    return {"plan": p, "estimates": np.array(est), "sds": np.array(sds)}


def report(args: argparse.Namespace) -> str:
    layout = Layout(Kind.COUNT, args.log2_buckets)
    t = time.perf_counter()
    s = sector(args.persons, args.nodes, args.seed)
    gen = time.perf_counter() - t
    tr = truth(s)
    r = full_round(s, layout)
    n = noisy_reps(s, layout, args.rho, args.reps)
    p = n["plan"]
    names = ["reach", "1 institution", "2 institutions", "3 institutions", "4+ institutions"]
    mib = 1 << 20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        f"Command: `python -m bench.reach_accuracy --persons {args.persons} --nodes {args.nodes}"
        f" --log2-buckets {args.log2_buckets} --rho {args.rho} --reps {args.reps}"
        f" --seed {args.seed}`; {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}.",
        "",
        f"Sector: {tr[0]:,} distinct persons, {r['records']:,} node–person records over "
        f"{args.nodes} nodes (largest node {r['largest']:,} persons); m = 2^{args.log2_buckets}"
        f" buckets (λ = {tr[0] / layout.buckets:.3f}); generated in {gen:.1f} s.",
        "",
        "**Noise off, the whole round** (pooled = the distinct counts over all nodes' pseudonyms):",
        "",
        "| figure | pooled | estimate | error | relative | 95% half-width (collisions) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, truth_v, iv in zip(names, tr, r["estimates"], strict=True):
        err = iv.estimate - truth_v
        lines.append(
            f"| {name} | {truth_v:,} | {iv.estimate:,.0f} | {err:+,.0f} | "
            f"{err / truth_v:+.4%} | ±{1.96 * iv.sd:,.0f} |"
        )
    est, sds = n["estimates"], n["sds"]
    lines += [
        "",
        f"**Noise on**, ρ = {args.rho} per query: σ = {p.scale:.3f} per helper and value, "
        f"shift s = {p.shift} (δ₀ = {p.truncation_delta:g}), noise SD per histogram value "
        f"{np.sqrt(p.noise_variance):.2f} (both helpers); (ε, δ) = ({p.epsilon(1e-9):.3f}, "
        f"1e-9). {args.reps} repetitions, fresh salt and dummies each:",
        "",
        "| figure | truth | mean estimate | empirical SD | relative SD | SD the interval reports |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for i, name in enumerate(names):
        sd = est[:, i].std(ddof=1) if args.reps > 1 else float("nan")
        lines.append(
            f"| {name} | {tr[i]:,} | {est[:, i].mean():,.0f} | {sd:,.1f} | {sd / tr[i]:.4%} | "
            f"{sds[:, i].mean():,.1f} |"
        )
    nc = np.array(r["node_cpu"])
    up = np.array(r["upload"])
    lines += [
        "",
        "**Cost** (CPU = process time on one core; this process plays every party in turn):",
        "",
        f"* node: CPU mean {nc.mean():.3f} s, max {nc.max():.3f} s (hash, vector, ChaCha20 share);"
        f" upload {up.max() / mib:.2f} MiB per node (explicit share + 32-byte seed to the other"
        " helper)",
        f"* helper A (sum of {args.nodes} explicit shares + shuffle): {r['helper_a']:.2f} s CPU",
        f"* helper B (expand and sum {args.nodes} seeds + shuffle): "
        f"{r['helper_b']:.2f} s CPU (of which the shuffle {r['shuffle']:.2f} s)",
        f"* drawing and building one helper's dummies at ρ = 0.05 (OpenDP, 256 values): "
        f"{r['dummies']:.3f} s CPU",
        f"* aggregator (add, histogram, estimate): {r['aggregator']:.2f} s CPU",
        f"* peak RSS of the whole benchmark: {rss:,.0f} MiB",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--nodes", type=int, default=90)
    ap.add_argument("--log2-buckets", type=int, default=24)
    ap.add_argument("--rho", type=float, default=0.05)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    print(report(ap.parse_args()))


if __name__ == "__main__":
    main()
