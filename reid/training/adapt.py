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
SpCL family, with a tracklet as the smallest unit (TAUDL).

Self-validation: before training, a share of the tracklets (``holdout``) is kept out
(:mod:`reid.training.heldout`); the model adaptation starts from and each round's model
verify the pairs the footage and the run vouch for among them, and the best round is
exported, through the parity-checked ONNX export, only when it beats the starting model by
the margin of :mod:`reid.training.verification`. Otherwise no model is written and the
site keeps its own.

An operator's corrections join the free structure when given (``--constraints``,
:mod:`reid.training.constraints`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from rich.console import Console

from reid.config import Settings
from reid.data.datasets import ReidDataset, Sample
from reid.data.run_folder import RunMaterial, read_runs
from reid.evaluation import extract
from reid.export.onnx_export import OnnxExport, export_onnx
from reid.models import CASN
from reid.models.checkpoint import CheckpointError, load_checkpoint
from reid.runtime.clustering import (
    MIN_NEGATIVES,
    camera_centred,
    linked_within,
    merge_constrained,
    pair_distances,
    pair_rate,
    quantile_threshold,
)
from reid.training.cannot_links import site_cannot_links
from reid.training.checkpoint import checkpoint_config
from reid.training.config import TrainConfig
from reid.training.constraints import Constraints, honour, read_constraints
from reid.training.engine import Trainer
from reid.training.heldout import Split, held_out_evidence, hold_out
from reid.training.verification import Measure, SelfValidation, Verdict

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
    holdout: float = Field(
        0.2,
        ge=0.0,
        le=0.5,
        description="share of the tracklets kept out of training to judge the adapted model "
        "by (drawn by train.seed); 0: no self-validation, the last round is adopted unchecked",
    )
    min_gain: float = Field(
        0.005, ge=0.0, description="held-out AUC gain the adapted model needs at least"
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
    heldout_auc: float | None = None  # the verdict's score; None: no self-validation
    heldout_within_auc: float | None = None  # within-tracklet pairs: reported, not scored


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
    negatives = site_cannot_links(material)
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


def _starting_model(
    config: AdaptConfig, init: str | Path | None, classes: int
) -> tuple[AdaptConfig, CASN]:
    """The model adaptation starts from (the current one, which self-validation measures),
    and the settings with its architecture: ``init``'s (e.g. an imported ResNet50), or the
    config's model from its own initial weights."""
    state = None
    if init is not None:
        start = load_checkpoint(init)
        state = start["model"]
        model_config = checkpoint_config(start, init).model
        config = config.model_copy(
            update={"train": config.train.model_copy(update={"model": model_config})}
        )
    torch.manual_seed(config.train.seed)
    model = CASN.from_config(config.train.model, classes).eval()
    if state is not None:
        _carry_over(model, state)
    return config, model


def _train_round(
    r: int,
    config: AdaptConfig,
    material: RunMaterial,
    rules: Constraints,
    model: CASN,
    folder: Path,
    console: Console,
) -> tuple[CASN, RoundReport]:
    """One cluster-then-train round from ``model``; the trained model and the round's
    report. Its ``last.pt`` is reused when it was trained on these very pseudo-labels."""
    train_cfg = config.train.model_copy(
        update={
            "output": str(folder),
            "optim": config.train.optim.model_copy(update={"epochs": config.epochs_per_round}),
            "eval": config.train.eval.model_copy(update={"every": config.epochs_per_round}),
        }
    )
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
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / "pseudo_labels.json"
    written = json.dumps(
        [
            {"run": t.run, "camera": t.camera, "track": t.track, "label": label}
            for t, label in zip(material.tracklets, labels, strict=True)
        ]
    )
    same_labels = record.is_file() and record.read_text() == written
    record.write_text(written)
    trainer = Trainer(train_cfg, dataset, console=console)
    _carry_over(trainer.model, model.state_dict())
    tick = time.perf_counter()
    last = folder / "last.pt"
    done = load_checkpoint(last) if same_labels and last.is_file() else {}
    if done.get("epoch") == config.epochs_per_round:
        trainer.model.load_state_dict(done["model"])
        loss = done["history"][-1]["total"] if done.get("history") else None
        console.print(f"round {r + 1}/{config.rounds}: already trained ({last})")
    else:
        summary = trainer.fit()
        loss = summary.history[-1]["total"] if summary.history else None
    sizes = np.bincount(labels)
    cams: dict[int, set[str]] = {}
    for t, label in zip(material.tracklets, labels, strict=True):
        cams.setdefault(label, set()).add(t.camera)
    report = RoundReport(
        r,
        len(sizes),
        int((sizes > 1).sum()),
        sum(len(c) > 1 for c in cams.values()),
        threshold,
        negatives,
        round(time.perf_counter() - tick, 2),
        loss,
    )
    return trainer.model.cpu().eval(), report


def adapt(
    runs: Sequence[str | Path],
    out: str | Path,
    config: AdaptConfig,
    init: str | Path | None = None,
    console: Console | None = None,
    constraints: str | Path | None = None,
) -> dict:
    """Adapt CASN to the site in ``runs``; writes ``out/report.json``, and ``out/model.onnx``
    when the adapted model wins the self-validation (or ``holdout`` is 0).
    ``constraints``: an operator's ``constraints.json`` (``reid-query corrections export``).

    A round already trained on the same pseudo-labels is not trained again (resumable)."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    split = hold_out(read_runs(runs), config.holdout, config.train.seed)
    material = split.train  # all that is trained on: the held-out tracklets never are
    rules = read_constraints(constraints, material) if constraints else Constraints.none()
    config, model = _starting_model(config, init, len(material.tracklets))
    check = None
    if config.holdout > 0:
        check = SelfValidation(held_out_evidence(split), config.min_gain, config.train.seed)
        console.print(
            f"self-validation: {len(split.held.tracklets)} tracklets held out, pairs "
            f"{check.evidence.counts()}"
            + _figures("the current model", check.measure_current(model))
        )
    rounds: list[RoundReport] = []
    trained = config.rounds if check is None or check.enough else 0  # else nothing to judge by
    for r in range(trained):
        model, done = _train_round(r, config, material, rules, model, out / f"round{r}", console)
        measure = check.measure_round(model) if check else None
        if measure is not None:
            done = replace(
                done, heldout_auc=measure.auc, heldout_within_auc=_number(measure.within_auc)
            )
        rounds.append(done)
        console.print(
            f"round {r + 1}/{config.rounds}: {done.clusters} pseudo-identities "
            f"({done.cross_camera_clusters} across cameras) from "
            f"{len(material.tracklets)} tracklets, {done.negatives} cannot-links"
            + _figures("its model", measure)
        )
    verdict = check.verdict() if check else Verdict.unchecked(config.rounds - 1)
    console.print(("[green]" if verdict.adopted else "[yellow]") + verdict.line)
    exported = (
        _export(out, material, out / f"round{verdict.best_round}" / "last.pt")
        if verdict.adopted
        else None
    )
    report = {
        "runs": [str(r) for r in runs],
        "tracklets": len(material.tracklets),
        "crops": sum(len(t.crops) for t in material.tracklets),
        "cameras": sorted({t.camera for t in material.tracklets}),
        "rounds": [asdict(r) for r in rounds],
        "constraints": {"must_link_pairs": len(rules.must), "cannot_link_pairs": len(rules.cannot)},
        "self_validation": _validation_record(config, split, check, verdict),
        "model": str(exported.onnx) if exported is not None else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _number(value: float) -> float | None:
    return None if np.isnan(value) else value


def _figures(whose: str, measure: Measure | None) -> str:
    """The held-out figures of one model, for the console."""
    if measure is None:
        return ""
    return (
        f"; {whose}: held-out AUC {measure.auc:.3f} on run links "
        f"(within tracklets {measure.within_auc:.3f}, not scored)"
    )


def _validation_record(
    config: AdaptConfig, split: Split, check: SelfValidation | None, verdict: Verdict
) -> dict:
    """report.json's account of the self-validation: what was held out and the verdict."""
    current = check.current if check else None
    return {
        **asdict(verdict),
        "current_within_auc": _number(current.within_auc) if current else None,
        "holdout": config.holdout,
        "min_gain": config.min_gain,
        "pairs": check.evidence.counts() if check else {},
        "held_out": [
            {"run": t.run, "camera": t.camera, "track": t.track} for t in split.held.tracklets
        ],
    }


def _export(out: Path, material: RunMaterial, checkpoint: Path) -> OnnxExport:
    """``checkpoint`` through the parity-checked ONNX export (channel basis fitted on up to
    64 of the site's own crops: training ones, the held-out ones are for judging only)."""
    samples = out / "samples"
    samples.mkdir(exist_ok=True)
    crops = [p for t in material.tracklets for p in t.crops]
    for n, index in enumerate(np.linspace(0, len(crops) - 1, min(64, len(crops))).astype(int)):
        target = samples / f"{n:03d}{crops[index].suffix}"
        target.unlink(missing_ok=True)  # an earlier export's may be a held-out crop now
        try:
            os.link(crops[index], target)
        except OSError:  # another file system
            shutil.copyfile(crops[index], target)
    return export_onnx(checkpoint, out / "model.onnx", samples)
