"""The held-out evidence of self-validation: tracklets kept out of adaptation, and the
verification pairs among them that the footage and the run vouch for (no human label).

What is held out (:func:`hold_out`): whole tracklets, a share of the site's, drawn by a
seed. They go by the run's identities: all the tracklets of one identity are held out
together (so its cross-camera links can be tested and none of its sightings is trained
on), a tracklet without a recorded identity on its own.

The pairs (:func:`held_out_evidence`), crop index pairs of four kinds:

- ``within_tracklet`` (positive): the first and the last crop of a tracklet. The run keeps
  a tracklet's crops best first, with no time order, so these are its best and its worst
  kept crop. Easy, and any training makes a model better at them: reported, not scored
  (:mod:`reid.training.verification`);
- ``run_link`` (positive): every crop pair of two tracklets the run put in one identity
  (a person seen again, mostly in another camera): the cross-camera positives re-id is
  about. They are pseudo-labels, but held out: no model was trained on them, and the model
  the run used made them, which favours keeping it, not the adapted one;
- ``same_camera_apart`` (negative): every crop pair of two tracklets seen at once in one
  camera: different people on the same background in the same light, the hard negatives;
- ``cross_camera_apart`` (negative): two tracklets seen at once in two cameras whose views
  do not overlap. A run link that the footage contradicts this way is left out.

docs/adaptation.md has the measurements behind these choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid.data.run_folder import RunMaterial
from reid.training.cannot_links import site_cannot_links

KINDS = ("within_tracklet", "run_link", "same_camera_apart", "cross_camera_apart")
WITHIN, LINK, SAME_CAMERA_APART, CROSS_CAMERA_APART = range(len(KINDS))


@dataclass(frozen=True)
class Split:
    """The site's tracklets cut in two; ``units[n]``: the held-out group of ``held[n]``."""

    train: RunMaterial
    held: RunMaterial
    units: tuple[int, ...]


def hold_out(material: RunMaterial, share: float, seed: int) -> Split:
    """Hold out whole groups (one identity's tracklets, or one tracklet) in an order drawn
    by ``seed``, each one that still fits within ``share`` of the tracklets."""
    groups: dict[tuple, list[int]] = {}
    for n, t in enumerate(material.tracklets):
        key = (t.run, "identity", t.identity) if t.identity is not None else (t.run, n)
        groups.setdefault(key, []).append(n)
    target = round(share * len(material.tracklets))
    members_of = list(groups.values())
    chosen: list[list[int]] = []
    held = 0
    for g in np.random.default_rng(seed).permutation(len(members_of)):
        members = members_of[g]
        if held + len(members) <= target:
            chosen.append(members)
            held += len(members)
    unit = {n: u for u, members in enumerate(chosen) for n in members}
    ordered = sorted(unit)
    return Split(
        RunMaterial(
            tuple(t for n, t in enumerate(material.tracklets) if n not in unit),
            material.overlapping,
        ),
        RunMaterial(tuple(material.tracklets[n] for n in ordered), material.overlapping),
        tuple(unit[n] for n in ordered),
    )


@dataclass(frozen=True)
class Evidence:
    """Verification pairs: ``pairs[p]`` indexes :attr:`crops`; ``kinds[p]`` into
    :data:`KINDS`; ``units[p]`` the held-out groups of its two sides (for resampling)."""

    crops: tuple[Path, ...]
    cameras: tuple[str, ...]  # the camera of each crop
    pairs: np.ndarray  # [P, 2]
    kinds: np.ndarray  # [P]
    units: np.ndarray  # [P, 2]
    groups: int

    @property
    def positive(self) -> np.ndarray:
        return self.kinds <= LINK

    def counts(self) -> dict[str, int]:
        return {name: int((self.kinds == k).sum()) for k, name in enumerate(KINDS)}


def held_out_evidence(split: Split) -> Evidence:
    """The pairs of the four kinds among the held-out tracklets (see the module)."""
    held = split.held.tracklets
    start = np.cumsum([0] + [len(t.crops) for t in held])
    found: list[tuple[int, int, int]] = []  # (kind, tracklet a, tracklet b)
    found += [(WITHIN, a, a) for a, t in enumerate(held) if len(t.crops) > 1]
    apart = site_cannot_links(split.held)
    found += [
        (SAME_CAMERA_APART if held[a].camera == held[b].camera else CROSS_CAMERA_APART, a, b)
        for a, b in apart.tolist()
    ]
    contradicted = set(map(tuple, apart.tolist()))
    found += [
        (LINK, a, b)
        for a in range(len(held))
        for b in range(a + 1, len(held))
        if held[a].identity is not None
        and (held[a].run, held[a].identity) == (held[b].run, held[b].identity)
        and (a, b) not in contradicted
    ]
    pairs, kinds, units = [], [], []
    for kind, a, b in found:
        if kind == WITHIN:
            crops = [(start[a], start[a + 1] - 1)]
        else:
            crops = [(i, j) for i in range(*start[a : a + 2]) for j in range(*start[b : b + 2])]
        pairs += crops
        kinds += [kind] * len(crops)
        units += [(split.units[a], split.units[b])] * len(crops)
    return Evidence(
        tuple(p for t in held for p in t.crops),
        tuple(t.camera for t in held for _ in t.crops),
        np.asarray(pairs, np.int64).reshape(-1, 2),
        np.asarray(kinds, np.int64),
        np.asarray(units, np.int64).reshape(-1, 2),
        len(set(split.units)),
    )
