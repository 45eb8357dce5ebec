"""Bounded state over a long run: the matcher's process memory and Redis memory, sampled
while a stream of people passes for minutes and identities expire (``retention_s``).

Each person is seen by 1-3 cameras in turn; new people keep coming, so without expiry the
gallery, the candidate index and Redis would grow without end. After the first
``retention_s`` the state should stop growing: the script prints the samples and the
growth from the middle third of the run to the last third (flat: about 0 %).

    .venv/bin/python -m benchmarks.soak [--minutes 3] [--retention-s 20] [--redis URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import numpy as np
from rich.console import Console
from rich.table import Table

from pipeline.matcher import Matcher, MatcherConfig, Tracklet
from pipeline.process import configure_process

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


def main() -> None:
    configure_process()  # as the CLIs do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--retention-s", type=float, default=20.0)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--events-cap", type=int, default=5000)
    parser.add_argument("--redis", default=None, help="Redis URL; default: embedded")
    args = parser.parse_args()
    namespace = f"soak-{uuid.uuid4().hex[:8]}"
    # a small events cap, reached within the run: the stream is capped, not expired
    config = MatcherConfig(retention_s=args.retention_s, events_maxlen=args.events_cap)
    matcher = Matcher(args.redis, namespace, config)
    rng = np.random.default_rng(0)
    samples: list[tuple[float, int, float, float, int]] = []
    prefix = matcher.keys.prefix
    shared: dict[str, int] = {}
    started = last_sample = time.monotonic()
    footage, person = 0.0, 0
    try:
        while time.monotonic() - started < args.minutes * 60:
            look = rng.standard_normal(args.dim).astype(np.float32)
            for camera in range(int(rng.integers(1, 4))):
                views = look + 0.3 * rng.standard_normal((3, args.dim)).astype(np.float32)
                views /= np.linalg.norm(views, axis=1, keepdims=True)
                start = footage + 20.0 * camera
                matcher.submit(Tracklet(f"cam{camera}", person, start, start + 8.0, views))
            footage += 2.0
            person += 1
            if time.monotonic() - last_sample >= args.sample_s:
                last_sample = time.monotonic()
                used = matcher.redis.info("memory")["used_memory"] / 2**20
                keys = sum(1 for _ in matcher.redis.scan_iter(f"{prefix}:*", count=1000))
                samples.append((last_sample - started, person, rss_mb(), used, keys))
                shared = {
                    "identities": matcher.redis.zcard(matcher.keys.identities),
                    "tracklets": matcher.redis.zcard(matcher.keys.tracklets),
                    "tracklets_seen": matcher.redis.zcard(matcher.keys.tracklets_seen),
                    "events": matcher.redis.xlen(matcher.keys.events),
                }
    finally:
        matcher.store.clear()
    table = Table(title=f"soak: retention {args.retention_s:g} s, D={args.dim}")
    for col in ("wall s", "people so far", "process RSS MB", "Redis used MB", "Redis keys"):
        table.add_column(col, justify="right")
    for t, people, rss, used, keys in samples:
        table.add_row(f"{t:.0f}", str(people), f"{rss:.1f}", f"{used:.1f}", str(keys))
    Console().print(table)
    print("entries in the shared keys at the end:", shared)
    if len(samples) < 3:
        raise SystemExit("too few samples: run longer (--minutes) or sample more often")
    third = len(samples) // 3
    middle, last = samples[third : 2 * third], samples[-third:]
    for name, column in (("process RSS", 2), ("Redis memory", 3), ("Redis keys", 4)):
        before = statistics.mean(s[column] for s in middle)
        after = statistics.mean(s[column] for s in last)
        print(f"{name}: {100 * (after / before - 1):+.1f} % from the middle third to the last")


if __name__ == "__main__":
    main()
