"""Matcher decision latency vs the bare top-k search, as the gallery grows.

The gallery is grown through the real matcher (every identity founded by a committed
decision), and at each size ``--probes`` decisions (half re-sightings of known people, half
new people) are timed next to the in-process top-k search over the same index: the limit a
decision cannot beat. Round trips are counted by the matcher.

    .venv/bin/python -m benchmarks.matcher                 # embedded Redis, 1k/10k/100k
    .venv/bin/python -m benchmarks.matcher --redis redis://127.0.0.1:6379 --dim 512
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import uuid
from collections.abc import Callable
from unittest import mock

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from pipeline.matcher import Matcher, MatcherConfig, Tracklet, connect
from pipeline.matcher.index import one_blas_thread
from pipeline.matcher.keys import Keys
from pipeline.process import configure_process


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


console = Console()


def blas_threads(
    matcher: Matcher,
    centers: list[np.ndarray],
    tracklet: Callable[[np.ndarray, str], Tracklet],
    rng: np.random.Generator,
    probes: int,
    rounds: int = 10,
) -> None:
    """Decisions at the largest gallery with BLAS on its default threads vs on one thread
    (what a decision does, :func:`pipeline.matcher.index.one_blas_thread`), interleaved
    round by round; the median ratio of the rounds' median latencies and its spread."""
    arms = {"default BLAS threads": contextlib.nullcontext, "one BLAS thread": one_blas_thread}
    medians: dict[str, list[float]] = {name: [] for name in arms}
    every: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(rounds):
        batch = [centers[rng.integers(len(centers))] for _ in range(max(probes // rounds, 10))]
        for name, limit in arms.items():
            times = []
            with mock.patch("pipeline.matcher.matcher.one_blas_thread", limit):
                for center in batch:
                    t = tracklet(center, "cam1")
                    start = time.perf_counter()
                    matcher.decide(t)
                    times.append((time.perf_counter() - start) * 1e3)
            medians[name].append(float(np.median(times)))
            every[name] += times
    table = Table(title=f"decisions at {len(centers):,} identities: BLAS threads")
    for col in ("BLAS", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right")
    for name, times in every.items():
        table.add_row(name, *(f"{v:.2f}" for v in np.percentile(times, [50, 99])))
    console.print(table)
    ratios = np.array(medians["one BLAS thread"]) / np.array(medians["default BLAS threads"])
    low, high = np.percentile(ratios, [25, 75])
    console.print(
        f"one / default BLAS threads, median of {rounds} interleaved rounds: "
        f"{np.median(ratios):.3f} (interquartile {low:.3f}-{high:.3f})"
    )


def main() -> None:
    configure_process()  # as the CLIs do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=None, help="Redis URL (default: embedded)")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--dim", type=int, default=2048, help="feature dim (ResNet50 IDE: 2048)")
    parser.add_argument("--probes", type=int, default=300)
    args = parser.parse_args()
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    client = connect(args.redis, embedded_dir=tempfile.mkdtemp(prefix="bench-redis-"))
    matcher = Matcher(
        namespace=namespace, config=MatcherConfig(exemplars_per_identity=2), client=client
    )
    rng = np.random.default_rng(0)
    centers: list[np.ndarray] = []
    clock = 0.0

    def tracklet(center: np.ndarray, camera: str) -> Tracklet:
        nonlocal clock
        clock += 1.0
        views = unit(center + 0.02 * rng.standard_normal((2, args.dim)))
        return Tracklet(camera, int(clock), clock, clock + 0.5, views)

    table = Table(title=f"matcher decisions vs bare top-k (dim {args.dim}, top_k 10)")
    for col in (
        "identities",
        "decision p50 ms",
        "decision p99 ms",
        "top-k p50 ms",
        "top-k p99 ms",
        "p50 ratio",
        "round trips / decision",
    ):
        table.add_column(col, justify="right")
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            for _ in track(range(size - len(centers)), description=f"growing to {size}"):
                centers.append(unit(rng.standard_normal(args.dim)))
                matcher.submit(tracklet(centers[-1], "cam0"))
            decision_ms, search_ms, trips = [], [], []
            for n in range(args.probes):
                known = n % 2 == 0
                center = (
                    centers[rng.integers(len(centers))]
                    if known
                    else unit(rng.standard_normal(args.dim))
                )
                t = tracklet(center, "cam1")
                start = time.perf_counter()
                with one_blas_thread():  # as a decision searches
                    matcher.gallery.index.search(t.features, matcher.config.top_k)
                search_ms.append((time.perf_counter() - start) * 1e3)
                before = matcher.gallery.round_trips
                start = time.perf_counter()
                matcher.decide(t)
                decision_ms.append((time.perf_counter() - start) * 1e3)
                trips.append(matcher.gallery.round_trips - before)
                if not known:
                    centers.append(center)
            d50, d99 = np.percentile(decision_ms, [50, 99])
            s50, s99 = np.percentile(search_ms, [50, 99])
            table.add_row(
                f"{len(centers):,}",
                f"{d50:.2f}",
                f"{d99:.2f}",
                f"{s50:.2f}",
                f"{s99:.2f}",
                f"{d50 / s50:.1f}x",
                f"{np.mean(trips):.2f}",
            )
        console.print(table)
        blas_threads(matcher, centers, tracklet, rng, args.probes)
    finally:
        keys = Keys(namespace)
        batch = list(matcher.redis.scan_iter(keys.pattern(), count=10_000))
        for i in range(0, len(batch), 10_000):
            matcher.redis.delete(*batch[i : i + 10_000])


if __name__ == "__main__":
    main()
