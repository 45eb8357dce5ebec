"""Label-free site adaptation: train CASN on the site's own tracklets (``reid-train adapt``).

No human label is used. What the footage gives for free:

- the crops of one tracklet are one person;
- two tracklets seen at once in one camera, or in two cameras whose views do not overlap,
  are different people (cannot-links);
- across cameras, pseudo-identities come first from the run's own final identities
  (``identities.json``: the matcher's re-association, which also weighed transit times and
  overlapping views), then from camera-aware clustering of the current features under
  those cannot-links, with a threshold calibrated on the cannot-link pairs themselves
  (:mod:`reid.runtime.clustering`, the same clustering the live matcher re-associates with).

Each round re-embeds every crop with the current model, re-clusters, and trains CASN on the
pseudo-identities for a few epochs (its loss terms as the config sets them), starting from
the previous round's weights: the cluster-then-train loop of the cluster-contrast /
SpCL family, with a tracklet as the smallest unit (TAUDL). The last model is exported
through the parity-checked ONNX export, ready for ``reid.model: OUT/model.onnx``.

An operator's corrections on the review page, exported by ``reid-query corrections export``
(``constraints.json``), join the free structure when given (``--constraints``): a
must-link (tracklets said to be one person) is joined in every round, a cannot-link (said
to be different people) is never crossed, not even by a must-link or the run's own
identities.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from rich.console import Console

from reid.config import Settings
from reid.data.datasets import DatasetError, ReidDataset, Sample
from reid.data.run_folder import RunMaterial, read_runs
from reid.evaluation import extract
from reid.export.onnx_export import OnnxExport, export_onnx
from reid.models import CASN
from reid.models.checkpoint import CheckpointError, load_checkpoint
from reid.runtime.clustering import (
    MIN_NEGATIVES,
    camera_centred,
    cannot_links,
    linked_within,
    merge_constrained,
    pair_distances,
    pair_rate,
    quantile_threshold,
)
from reid.training.checkpoint import checkpoint_config
from reid.training.config import TrainConfig
from reid.training.engine import Trainer

RUN_SPACING_S = 1e7  # runs are laid end to end in time: no cannot-link across runs


# the shipped adaptation settings (package data: found from any folder and a wheel install)
DEFAULT_ADAPT = Path(
    str(resources.files("reid.training").joinpath("defaults/adapt_mobilenet.yaml"))
)


class AdaptConfig(Settings):
    """``reid-train adapt`` settings (shipped defaults: :data:`DEFAULT_ADAPT`)."""

    train: TrainConfig = TrainConfig()
    rounds: int = Field(3, ge=1, description="cluster-then-train rounds")
    epochs_per_round: int = Field(4, ge=1)
    false_links_per_tracklet: float = Field(
        0.35, gt=0.0, description="as the matcher's: known-different tracklets within reach"
    )


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


@dataclass(frozen=True)
class RoundReport:
    round: int
    clusters: int
    multi_tracklet_clusters: int
    cross_camera_clusters: int
    threshold: float | None
    negatives: int
    train_seconds: float
    loss: float | None


def pseudo_identities(
    features: np.ndarray,
    material: RunMaterial,
    rate_per_tracklet: float,
    constraints: Constraints | None = None,
) -> tuple[list[int], float | None, int]:
    """Cluster label per tracklet, the calibrated threshold (None: too few cannot-links,
    each tracklet stays its own identity but for must-links) and how many free
    cannot-links there were (the threshold is calibrated on those, not on the operator's)."""
    constraints = constraints or Constraints.none()
    tracklets = material.tracklets
    vectors = camera_centred(features, [t.camera for t in tracklets])
    negatives = cannot_links(
        np.array([t.start + t.run * RUN_SPACING_S for t in tracklets]),
        np.array([t.end + t.run * RUN_SPACING_S for t in tracklets]),
        [t.camera for t in tracklets],
        material.overlaps,
    )
    apart = np.concatenate([negatives, constraints.cannot])
    if len(negatives) < MIN_NEGATIVES:
        nothing = np.empty((0, 2), np.int64)
        labels = merge_constrained(vectors, nothing, apart, lambda a, b: False, constraints.must)
        return labels, None, len(negatives)
    rate = pair_rate(len(tracklets), rate_per_tracklet)
    threshold = quantile_threshold(pair_distances(vectors, negatives), rate)
    labels = linked_within(vectors, apart, threshold, must_links=constraints.must)
    return labels, threshold, len(negatives)


def _samples(material: RunMaterial, labels: Sequence[int]) -> list[Sample]:
    cameras = {c: n for n, c in enumerate(sorted({t.camera for t in material.tracklets}))}
    return [
        Sample(path, label, cameras[t.camera])
        for t, label in zip(material.tracklets, labels, strict=True)
        for path in t.crops
    ]


def _self_check_split(samples: list[Sample]) -> tuple[tuple[Sample, ...], tuple[Sample, ...]]:
    """Query/gallery over pseudo-identities seen in two cameras or more: the Trainer's
    validation then measures self-consistency (how well the model ranks its own clusters),
    not accuracy."""
    by_pid: dict[int, list[Sample]] = {}
    for s in samples:
        by_pid.setdefault(s.pid, []).append(s)
    query = [group[0] for group in by_pid.values() if len({s.camid for s in group}) > 1]
    chosen = {id(q) for q in query}
    return tuple(query), tuple(s for s in samples if id(s) not in chosen)


def _tracklet_features(model: CASN, material: RunMaterial) -> np.ndarray:
    samples = [Sample(p, 0, 0) for t in material.tracklets for p in t.crops]
    crops = extract(model, samples, torch.device("cpu")).features.numpy()
    out, start = [], 0
    for t in material.tracklets:
        mean = crops[start : start + len(t.crops)].mean(axis=0)
        out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        start += len(t.crops)
    return np.stack(out).astype(np.float32)


def _carry_over(model: CASN, state: dict) -> None:
    """Start from earlier weights; the identity classifier is new each round (other ids)."""
    kept = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    try:
        missing, unexpected = model.load_state_dict(kept, strict=False)
    except RuntimeError as exc:  # same names, other shapes
        raise CheckpointError(f"the starting weights do not fit this model: {exc}") from exc
    wrong = [k for k in missing if not k.startswith("classifier.")] + list(unexpected)
    if wrong:
        raise CheckpointError(
            f"the starting weights do not fit model {model.backbone_name} "
            f"({len(wrong)} mismatched tensors, e.g. {wrong[0]})"
        )


def adapt(
    runs: Sequence[str | Path],
    out: str | Path,
    config: AdaptConfig,
    init: str | Path | None = None,
    console: Console | None = None,
    constraints: str | Path | None = None,
) -> dict:
    """Adapt CASN to the site in ``runs``; writes ``out/model.onnx`` and ``out/report.json``.
    ``constraints``: an operator's ``constraints.json`` (``reid-query corrections export``).

    A round whose ``last.pt`` is complete is not trained again (resumable)."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    material = read_runs(runs)
    rules = read_constraints(constraints, material) if constraints else Constraints.none()
    state = None
    if init is not None:  # its architecture comes with it (e.g. an imported ResNet50)
        start = load_checkpoint(init)
        state = start["model"]
        model_config = checkpoint_config(start, init).model
        config = config.model_copy(
            update={"train": config.train.model_copy(update={"model": model_config})}
        )
    rounds: list[RoundReport] = []
    model = None
    for r in range(config.rounds):
        folder = out / f"round{r}"
        train_cfg = config.train.model_copy(
            update={
                "output": str(folder),
                "optim": config.train.optim.model_copy(update={"epochs": config.epochs_per_round}),
                "eval": config.train.eval.model_copy(update={"every": config.epochs_per_round}),
            }
        )
        if model is None:  # the starting point embeds the first round's crops
            torch.manual_seed(config.train.seed)
            model = CASN.from_config(config.train.model, len(material.tracklets)).eval()
            if state is not None:
                _carry_over(model, state)
        known = [t.identity for t in material.tracklets if t.identity is not None]
        if r == 0 and len(known) == len(material.tracklets):
            # the run's own identities: re-association already weighed time and space
            names: dict[str, int] = {}
            labels = honour([names.setdefault(name, len(names)) for name in known], rules)
            threshold, negatives = None, 0
        else:
            features = _tracklet_features(model, material)
            labels, threshold, negatives = pseudo_identities(
                features, material, config.false_links_per_tracklet, rules
            )
        samples = _samples(material, labels)
        query, gallery = _self_check_split(samples)
        dataset = ReidDataset(f"site pseudo-identities, round {r}", tuple(samples), query, gallery)
        (folder).mkdir(parents=True, exist_ok=True)
        (folder / "pseudo_labels.json").write_text(
            json.dumps(
                [
                    {"run": t.run, "camera": t.camera, "track": t.track, "label": label}
                    for t, label in zip(material.tracklets, labels, strict=True)
                ]
            )
        )
        trainer = Trainer(train_cfg, dataset, console=console)
        _carry_over(trainer.model, model.state_dict())
        tick = time.perf_counter()
        last = folder / "last.pt"
        done = load_checkpoint(last) if last.is_file() else {}
        if done.get("epoch") == config.epochs_per_round:
            trainer.model.load_state_dict(done["model"])
            loss = done["history"][-1]["total"] if done.get("history") else None
            console.print(f"round {r + 1}/{config.rounds}: already trained ({last})")
        else:
            summary = trainer.fit()
            loss = summary.history[-1]["total"] if summary.history else None
        model = trainer.model.cpu().eval()
        sizes = np.bincount(labels)
        cams: dict[int, set[str]] = {}
        for t, label in zip(material.tracklets, labels, strict=True):
            cams.setdefault(label, set()).add(t.camera)
        rounds.append(
            RoundReport(
                r,
                len(sizes),
                int((sizes > 1).sum()),
                sum(len(c) > 1 for c in cams.values()),
                threshold,
                negatives,
                round(time.perf_counter() - tick, 2),
                loss,
            )
        )
        console.print(
            f"round {r + 1}/{config.rounds}: {len(sizes)} pseudo-identities "
            f"({rounds[-1].cross_camera_clusters} across cameras) from "
            f"{len(material.tracklets)} tracklets, {negatives} cannot-links"
        )
    exported = _export(out, material, out / f"round{config.rounds - 1}" / "last.pt")
    report = {
        "runs": [str(r) for r in runs],
        "tracklets": len(material.tracklets),
        "crops": sum(len(t.crops) for t in material.tracklets),
        "cameras": sorted({t.camera for t in material.tracklets}),
        "rounds": [asdict(r) for r in rounds],
        "constraints": {"must_link_pairs": len(rules.must), "cannot_link_pairs": len(rules.cannot)},
        "model": str(exported.onnx),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _export(out: Path, material: RunMaterial, checkpoint: Path) -> OnnxExport:
    """``checkpoint`` through the parity-checked ONNX export (channel basis fitted on up to
    64 of the site's own crops)."""
    samples = out / "samples"
    samples.mkdir(exist_ok=True)
    crops = [p for t in material.tracklets for p in t.crops]
    for n, index in enumerate(np.linspace(0, len(crops) - 1, min(64, len(crops))).astype(int)):
        target = samples / f"{n:03d}{crops[index].suffix}"
        if not target.exists():
            try:
                os.link(crops[index], target)
            except OSError:  # another file system
                shutil.copyfile(crops[index], target)
    return export_onnx(checkpoint, out / "model.onnx", samples)
