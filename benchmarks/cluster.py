"""What the Redis Cluster client costs a matcher decision: one private redis-server and one
private 3-primary Redis Cluster, both started here on local ports, a gallery of the same
identities grown in each, then decisions timed round by round, interleaved (single, cluster,
single, cluster, ...), and the median ratio of the rounds' median latencies printed with its
spread.

    .venv/bin/python -m benchmarks.cluster --size 10000 --rounds 10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from pipeline.matcher import Matcher, MatcherConfig, Tracklet, connect
from pipeline.process import configure_process
from tests.pipeline.servers import RedisClusterServers, RedisServer


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def main() -> None:
    configure_process()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="identities in each gallery")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--probes", type=int, default=50, help="decisions per round")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    single, cluster = RedisServer(work / "single").start(), RedisClusterServers(work).start()
    try:
        rng = np.random.default_rng(0)
        centers = unit(rng.standard_normal((args.size, args.dim)))
        config = MatcherConfig(exemplars_per_identity=2)
        matchers = {
            name: Matcher(client=connect(url, namespace="bench"), namespace="bench", config=config)
            for name, url in (("single server", single.url), ("cluster", cluster.url))
        }
        for name, matcher in matchers.items():
            for n in track(range(args.size), description=f"growing {name}"):
                views = unit(centers[n] + 0.02 * rng.standard_normal((2, args.dim)))
                matcher.submit(Tracklet("cam0", n, float(n), n + 0.5, views))
        clock = float(args.size)
        rounds: dict[str, list[float]] = {name: [] for name in matchers}
        every: dict[str, list[float]] = {name: [] for name in matchers}
        for _ in range(args.rounds):
            probes = [
                unit(centers[rng.integers(args.size)] + 0.02 * rng.standard_normal((2, args.dim)))
                for _ in range(args.probes)
            ]
            for name, matcher in matchers.items():
                times = []
                for views in probes:
                    clock += 1.0
                    start = time.perf_counter()
                    matcher.decide(Tracklet("cam1", int(clock), clock, clock + 0.5, views))
                    times.append((time.perf_counter() - start) * 1e3)
                rounds[name].append(statistics.median(times))
                every[name] += times
    finally:
        single.stop()
        cluster.stop()
    ratios = [c / s for s, c in zip(rounds["single server"], rounds["cluster"], strict=True)]
    table = Table(title=f"decision latency, {args.size:,} identities, dim {args.dim}")
    for col in ("Redis", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right")
    for name, times in every.items():
        p50, p99 = np.percentile(times, [50, 99])
        table.add_row(name, f"{p50:.2f}", f"{p99:.2f}")
    console = Console()
    console.print(table)
    low, high = np.percentile(ratios, [25, 75])
    console.print(
        f"cluster / single server, median of {args.rounds} interleaved rounds: "
        f"{statistics.median(ratios):.3f} (interquartile {low:.3f}-{high:.3f})"
    )


if __name__ == "__main__":
    main()
