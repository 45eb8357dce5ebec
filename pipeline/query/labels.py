"""Operators' corrections as training labels, written as plain files for ``reid-train``
(the pipeline never imports training code; training reads these files):

    OUT/crops/<person>/<camera>_<end>_<track>-<n>.jpg   confirmed people: ``reid-train`` site
                                                        data (``data.name: site``)
    OUT/constraints.json                                for ``reid-train adapt --constraints``

A merge or a confirmation says its tracklets are one person (a *must-link* group); a split
or a "not the same person" mark says its two groups are different people (a *cannot-link*).
Must-link groups sharing a tracklet are one person. A person that a cannot-link would cut
in two is left out of the labelled crops (the operator said both) and listed in
``conflicts``; the constraints keep both statements and clustering lets cannot win.
Tracklets are named ``{"camera", "track"}``: track ids are unique within a namespace.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from pipeline.matcher.corrections import Correction

SAME = ("merge", "confirm")
APART = ("split", "not_same")


def _ref(tracklet: dict) -> tuple[str, int]:
    return str(tracklet["camera"]), int(tracklet["track"])


def _named(refs) -> list[dict]:  # noqa: ANN001 - iterable of (camera, track)
    return [{"camera": c, "track": t} for c, t in refs]


def people(corrections: Sequence[Correction]) -> list[list[dict]]:
    """Must-link groups joined where they share a tracklet (union-find), largest first."""
    parent: dict[tuple[str, int], tuple[str, int]] = {}
    tracklets: dict[tuple[str, int], dict] = {}

    def root(ref: tuple[str, int]) -> tuple[str, int]:
        while parent[ref] != ref:
            parent[ref] = parent[parent[ref]]
            ref = parent[ref]
        return ref

    for correction in corrections:
        if correction.kind not in SAME:
            continue
        refs = [_ref(t) for group in correction.groups for t in group]
        for group in correction.groups:
            for t in group:
                tracklets[_ref(t)] = t
                parent.setdefault(_ref(t), _ref(t))
        for ref in refs[1:]:
            parent[root(ref)] = root(refs[0])
    found: dict[tuple[str, int], list[dict]] = {}
    for ref in sorted(tracklets):
        found.setdefault(root(ref), []).append(tracklets[ref])
    return sorted(found.values(), key=lambda g: (-len(g), _ref(g[0])))


def export_labels(corrections: Sequence[Correction], out: str | Path) -> dict:
    """Write the crops of confirmed people and ``constraints.json`` under ``out``; returns
    what was written (people, crops, missing crops, constraints, conflicts)."""
    out = Path(out)
    groups = people(corrections)
    apart = [
        [[_ref(t) for t in side] for side in c.groups]
        for c in corrections
        if c.kind in APART and len(c.groups) == 2
    ]
    conflicted = {
        n
        for n, group in enumerate(groups)
        for refs in [{_ref(t) for t in group}]
        if any(refs.intersection(a) and refs.intersection(b) for a, b in apart)
    }
    crops = missing = 0
    for n, group in enumerate(groups):
        if n in conflicted:
            continue
        folder = out / "crops" / f"person{n:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for t in group:
            for i, source in enumerate(t["crops"]):
                target = folder / f"{t['camera']}_{t['end']:.3f}_{t['track']}-{i}.jpg"
                if not Path(source).is_file():
                    missing += 1
                    continue
                if not target.exists():
                    try:
                        os.link(source, target)
                    except OSError:  # another file system
                        shutil.copyfile(source, target)
                crops += 1
    constraints = {
        "must_link": [_named(map(_ref, g)) for g in groups],
        "cannot_link": [[_named(a), _named(b)] for a, b in apart],
        "conflicts": sorted(f"person{n:04d}" for n in conflicted),
        "corrections": [c.event for c in corrections],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "constraints.json").write_text(json.dumps(constraints, indent=1))
    return {
        "people": len(groups) - len(conflicted),
        "crops": crops,
        "missing_crops": missing,
        "must_link": len(groups),
        "cannot_link": len(apart),
        "conflicts": constraints["conflicts"],
        "out": str(out),
    }
