"""Candidates timed round by round (A B C A B C ...) and compared per round.

A shared machine's load changes within seconds; timing one candidate after the other
measured a neighbour as often as our code. Every round runs each candidate once, so a
ratio taken inside a round compares like with like; the median over rounds and its
spread (lowest, highest) are reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

K = TypeVar("K")


@dataclass(frozen=True)
class Ratio:
    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:.2f}x ({self.low:.2f}-{self.high:.2f})"


def interleave(
    candidates: Mapping[str, Callable[[], float]], rounds: int
) -> dict[str, list[float]]:
    """Each candidate's result per round; a candidate returns one measurement (a rate)."""
    results: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, measure in candidates.items():
            results[name].append(measure())
    return results


def ratio(candidate: list[float], baseline: list[float]) -> Ratio:
    """Per-round ``candidate / baseline``: median and spread."""
    per_round = [c / b for c, b in zip(candidate, baseline, strict=True)]
    return Ratio(statistics.median(per_round), min(per_round), max(per_round))


def rate(fn: Callable[[], object], items: int, seconds: float) -> float:
    """Items per second of ``fn`` (which handles ``items`` per call) over at least
    ``seconds`` and three calls, after one warm-up call; CUDA work is waited for."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn()
    sync()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or runs < 3:
        fn()
        runs += 1
    sync()
    return runs * items / (time.perf_counter() - start)


def batched_rate(fn: Callable[[Sequence], object], items: Sequence, batch: int) -> float:
    """Items per second of ``fn`` called on ``items`` in consecutive batches of ``batch``:
    one warm-up pass, then three timed passes (:func:`rate`)."""

    def one_pass() -> None:
        for i in range(0, len(items), batch):
            fn(items[i : i + batch])

    return rate(one_pass, len(items), seconds=0.0)
