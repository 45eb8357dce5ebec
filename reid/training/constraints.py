"""An operator's corrections as adaptation constraints (``reid-train adapt --constraints``).

``reid-query corrections export`` writes ``constraints.json``: must-link groups (tracklets
said to be one person) and cannot-link group pairs (said to be different people). A
must-link is joined in every round of adaptation; a cannot-link is never crossed, not even
by a must-link or the run's own identities.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid.data.datasets import DatasetError
from reid.data.run_folder import RunMaterial
from reid.runtime.clustering import merge_constrained


@dataclass(frozen=True)
class Constraints:
    """Operator's constraints as tracklet index pairs ``[P, 2]`` into the material."""

    must: np.ndarray
    cannot: np.ndarray

    @classmethod
    def none(cls) -> Constraints:
        return cls(np.empty((0, 2), np.int64), np.empty((0, 2), np.int64))


def read_constraints(path: str | Path, material: RunMaterial) -> Constraints:
    """``constraints.json`` of ``reid-query corrections export``: must-link groups and
    cannot-link group pairs of ``{"camera", "track"}``, as pairs of the material's tracklets
    (a track in several runs' material counts in each; tracks not in it are skipped)."""
    where: dict[tuple[str, int], list[int]] = {}
    for n, t in enumerate(material.tracklets):
        where.setdefault((t.camera, t.track), []).append(n)
    try:
        data = json.loads(Path(path).read_text())

        def found(group: list[dict]) -> list[int]:
            return [n for t in group for n in where.get((str(t["camera"]), int(t["track"])), [])]

        must = [(g[0], n) for g in map(found, data["must_link"]) for n in g[1:]]
        cannot = [
            (i, j) for a, b in data["cannot_link"] for i in found(a) for j in found(b) if i != j
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: not a constraints file of reid-query ({exc})") from exc
    return Constraints(
        np.asarray(must, np.int64).reshape(-1, 2), np.asarray(cannot, np.int64).reshape(-1, 2)
    )


def honour(labels: Sequence[int], constraints: Constraints) -> list[int]:
    """``labels`` (the run's own identities) re-formed under the operator's constraints:
    must-links joined first, then each label's members wherever no cannot-link forbids."""
    first: dict[int, int] = {}
    pairs = [(first.setdefault(label, n), n) for n, label in enumerate(labels)]
    return merge_constrained(
        np.zeros((len(labels), 1)),
        np.asarray([p for p in pairs if p[0] != p[1]], np.int64).reshape(-1, 2),
        constraints.cannot,
        lambda a, b: True,
        constraints.must,
    )
