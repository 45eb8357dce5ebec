"""Re-association of a large window through Redis vs the bare clustering of the same
tracklets in memory (the limit: what Redis and the atomic apply add), and how well both
recover the people (pairwise F1 against the generator's identities).

    .venv/bin/python -m benchmarks.relink --tracklets 10000 --dim 1280

People walk through ``--cameras`` cameras in turn (10-20 s transits, several in view at
once); features are a person's direction plus per-view noise. The tracklets are decided
online first (greedy, as the pipeline does), then the whole window is re-associated.
Rounds alternate Redis / in-memory and the median per-round ratio is printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from pipeline.matcher import Matcher, MatcherConfig, Tracklet, connect
from pipeline.matcher.association import cluster_tracklets
from pipeline.process import configure_process


def scene(tracklets: int, cameras: int, dim: int, seed: int) -> tuple[list[Tracklet], list[int]]:
    rng = np.random.default_rng(seed)
    people = tracklets // cameras
    centres = rng.standard_normal((people, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out, truth = [], []
    for p in range(people):
        t = p * 0.5  # a new person every half second: about 40 in view per camera
        for cam in range(cameras):
            views = centres[p] + 0.5 / np.sqrt(dim) * rng.standard_normal((3, dim))
            views /= np.linalg.norm(views, axis=1, keepdims=True)
            # each crosses the view left to right in 8 s (the boxes hand-overs weigh)
            times = np.linspace(t, t + 8.0, 9)
            x, y = np.linspace(0.0, 640.0, 9), float(rng.uniform(200, 450))
            path = np.c_[times, x - 20, np.full(9, y - 100), x + 20, np.full(9, y)]
            out.append(Tracklet(f"cam{cam}", p, t, t + 8.0, views.astype(np.float32), path=path))
            truth.append(p)
            t += 8.0 + float(rng.uniform(10.0, 20.0))
    order = np.argsort([x.end for x in out], kind="stable")
    return [out[i] for i in order], [truth[i] for i in order]


def pairwise_f1(labels: list, truth: list) -> float:
    """F1 of the same-person pairs, by counting (no N x N matrix)."""
    from collections import Counter

    joint = Counter(zip(labels, truth, strict=True))
    both = sum(c * (c - 1) // 2 for c in joint.values())
    predicted = sum(c * (c - 1) // 2 for c in Counter(labels).values())
    actual = sum(c * (c - 1) // 2 for c in Counter(truth).values())
    return 2 * both / max(predicted + actual, 1)


def main() -> None:
    configure_process()  # as the CLIs do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=None, help="Redis URL (default: embedded)")
    parser.add_argument("--tracklets", type=int, default=10_000)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--dim", type=int, default=1280, help="1280: the fallback embedder")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tracklets, truth = scene(args.tracklets, args.cameras, args.dim, seed=0)
    client = connect(args.redis, embedded_dir=tempfile.mkdtemp(prefix="bench-redis-"))
    config = MatcherConfig()
    matcher = Matcher(namespace=f"bench-{uuid.uuid4().hex[:8]}", config=config, client=client)
    console = Console()
    try:
        decision_ms = []
        for t in track(tracklets, description="online decisions"):
            start = time.perf_counter()
            matcher.decide(t)
            decision_ms.append((time.perf_counter() - start) * 1e3)
        online = [matcher.identity_of(t.camera_id, t.track_id) for t in tracklets]
        redis_s, memory_s, ratios, reports = [], [], [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            reports.append(matcher.relink())
            redis_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            labels, _ = cluster_tracklets(tracklets, config)
            memory_s.append(time.perf_counter() - start)
            ratios.append(redis_s[-1] / memory_s[-1])
        relinked = [matcher.identity_of(t.camera_id, t.track_id) for t in tracklets]
    finally:
        matcher.store.clear()
    table = Table(title=f"re-association of {len(tracklets):,} tracklets (dim {args.dim})")
    for col in ("", "seconds (median)", "pairwise F1"):
        table.add_column(col, justify="right")
    table.add_row("online decisions only", "", f"{pairwise_f1(online, truth):.3f}")
    table.add_row(
        "re-association in Redis (ours)",
        f"{statistics.median(redis_s):.2f}",
        f"{pairwise_f1(relinked, truth):.3f}",
    )
    table.add_row(
        "clustering in memory (limit)",
        f"{statistics.median(memory_s):.2f}",
        f"{pairwise_f1(labels, truth):.3f}",
    )
    console.print(table)
    console.print(
        f"Redis / in-memory: median {statistics.median(ratios):.2f}x "
        f"(spread {min(ratios):.2f}-{max(ratios):.2f}x over {args.rounds} rounds); "
        f"first relink moved {reports[0].moves} tracklets in {reports[0].round_trips} round "
        "trips; "
        f"online decision p50 {np.percentile(decision_ms, 50):.2f} ms, "
        f"p99 {np.percentile(decision_ms, 99):.2f} ms"
    )


if __name__ == "__main__":
    main()
