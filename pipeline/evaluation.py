"""Multi-camera identity metrics (IDF1 / IDP / IDR) of an MTMC result, with motmetrics.

All cameras form one sequence (frames keyed by camera and frame number), so an identity
must keep one id across cameras to score, as in the AI City Challenge MTMC track. IoU
distances are computed here (motmetrics 1.4's ``iou_matrix`` uses ``np.asfarray``, gone in
NumPy 2).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.crop_quality import iou_matrix

FRAME_STRIDE = 10_000_000  # camera n's frames become n * stride + frame


class EvaluationError(ValueError):
    """Ground truth or predictions are missing or malformed."""


Boxes = dict[tuple[str, int], list[tuple[int, np.ndarray]]]


def read_ground_truth(folder: str | Path) -> Boxes:
    """``<folder>/<camera>.txt`` MOT files (frame,id,x,y,w,h,...) with global ids."""
    folder = Path(folder)
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    if not files:
        raise EvaluationError(f"ground truth {folder} must be a folder of <camera>.txt MOT files")
    boxes: Boxes = defaultdict(list)
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            try:
                frame, obj, x, y, w, h = (float(v) for v in line.split(",")[:6])
            except ValueError as exc:
                raise EvaluationError(f"{path}:{number}: expected frame,id,x,y,w,h,...") from exc
            boxes[(path.stem, int(frame))].append((int(obj), np.array([x, y, x + w, y + h])))
    return boxes


def read_predictions(path: str | Path) -> Boxes:
    """``mtmc.txt`` (camera obj frame x y w h xw yw) with ``ids.json`` beside it."""
    path = Path(path)
    ids_file = path.with_name("ids.json")
    if not path.is_file() or not ids_file.is_file():
        raise EvaluationError(f"predictions {path} and {ids_file} must both exist")
    cameras = json.loads(ids_file.read_text())["cameras"]
    boxes: Boxes = defaultdict(list)
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            cam, obj, frame, x, y, w, h = line.split()[:7]
            box = np.array([float(x), float(y), float(x) + float(w), float(y) + float(h)])
            boxes[(cameras[cam], int(frame))].append((int(obj), box))
        except (ValueError, KeyError) as exc:
            raise EvaluationError(
                f"{path}:{number}: expected camera obj frame x y w h ..."
            ) from exc
    return boxes


def evaluate_mtmc(gt: str | Path, pred: str | Path, iou: float = 0.5) -> dict[str, float]:
    import motmetrics as mm

    truth, guess = read_ground_truth(gt), read_predictions(pred)
    cameras = {c: n for n, c in enumerate(sorted({k[0] for k in truth} | {k[0] for k in guess}))}
    acc = mm.MOTAccumulator(auto_id=False)
    for key in sorted(set(truth) | set(guess), key=lambda k: (cameras[k[0]], k[1])):
        t, g = truth.get(key, []), guess.get(key, [])
        if t and g:
            overlap = iou_matrix(np.stack([b for _, b in t]), np.stack([b for _, b in g]))
            dist = np.where(overlap >= iou, 1.0 - overlap, np.nan)
        else:
            dist = np.empty((len(t), len(g)))
        acc.update(
            [o for o, _ in t],
            [o for o, _ in g],
            dist,
            frameid=cameras[key[0]] * FRAME_STRIDE + key[1],
        )
    names = ["idf1", "idp", "idr", "idtp", "idfp", "idfn"]
    summary = mm.metrics.create().compute(acc, metrics=names, name="all")
    return {n: float(summary[n].iloc[0]) for n in names}


def oracle_identities(
    gt: str | Path, run: str | Path, iou: float = 0.5
) -> Callable[[str, int], str]:
    """A perfect linker for a run: each local track gets the ground-truth id its boxes match
    most often (IoU >= ``iou``), so only linking is perfect, tracking stays as it was.
    Returns ``identity_of(camera, track)`` for :func:`pipeline.run_record.write_mtmc`."""
    truth = read_ground_truth(gt)
    votes: dict[tuple[str, int], Counter] = defaultdict(Counter)
    for line in (Path(run) / "boxes.txt").read_text().splitlines():
        camera, frame, track, *box = line.split()
        rows = truth.get((camera, int(frame)), [])
        if not rows:
            continue
        overlap = iou_matrix(np.array([[float(v) for v in box]]), np.stack([b for _, b in rows]))[0]
        best = int(np.argmax(overlap))
        if overlap[best] >= iou:
            votes[(camera, int(track))][rows[best][0]] += 1
    found = {key: f"gt{c.most_common(1)[0][0]}" for key, c in votes.items()}
    return lambda camera, track: found.get((camera, track), f"{camera}:{track}")


@dataclass(frozen=True)
class LinkQuality:
    """What an operator asks of cross-camera linking: are the links right, is an identity
    one person?

    Attributes:
        links: pairs of tracks in different cameras given one identity.
        correct: of those, pairs the ground truth says are one person.
        identities: identities with at least one track.
        pure: of those, identities where one person holds more than half of the tracks.
    """

    links: int
    correct: int
    identities: int
    pure: int

    @property
    def precision(self) -> float:
        return self.correct / self.links if self.links else 1.0

    @property
    def purity(self) -> float:
        return self.pure / self.identities if self.identities else 1.0


def link_quality(
    tracks: list[tuple[str, int]],
    identity_of: Callable[[str, int], str | None],
    person_of: Callable[[str, int], str],
) -> LinkQuality:
    """How ``identity_of`` (a linker) links a run's ``tracks`` ``(camera, track)``, judged
    by ``person_of`` (the ground truth's person of a track, e.g. :func:`oracle_identities`)."""
    members: dict[str, list[tuple[str, str]]] = defaultdict(list)  # identity -> camera, person
    for camera, track in tracks:
        identity = identity_of(camera, track)
        if identity is not None:
            members[identity].append((camera, person_of(camera, track)))
    links = correct = pure = 0
    for group in members.values():
        for n, (camera, person) in enumerate(group):
            for other_camera, other in group[n + 1 :]:
                if other_camera != camera:
                    links += 1
                    correct += other == person
        top = Counter(person for _, person in group).most_common(1)[0][1]
        pure += 2 * top > len(group)
    return LinkQuality(links, correct, len(members), pure)
