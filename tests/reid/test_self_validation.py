"""Self-validation before adoption (reid-train adapt): the held-out evidence is what the
footage and the run vouch for and is never trained on; an adaptation fed misleading
pseudo-labels is refused, one that helps is adopted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from reid.config import ModelConfig
from reid.data.datasets import Sample
from reid.data.run_folder import read_run
from reid.evaluation import extract
from reid.models import CASN
from reid.models.checkpoint import model_from_checkpoint
from reid.runtime.clustering import camera_centred, pair_distances
from reid.training.cli import app
from reid.training.heldout import KINDS, LINK, WITHIN, held_out_evidence, hold_out
from reid.training.verification import SelfValidation, weighted_auc
from tests.reid.sites import small_adapt_config, write_identities, write_run

# a generated site of 40 people in two cameras; a third of them held out (12 identities)
PEOPLE, SEED, SHARE = 40, 2, 0.3
# CPU-sized training from an untrained MobileNetV2: long enough to learn the site
TRAINING = [
    "epochs_per_round=24",
    "train.optim.lr=0.03",
    "train.optim.batch_size=16",
    "train.loss.ia=0",
    "train.loss.sa=0",
]


def crop_owner(path: Path) -> tuple[str, int]:
    """(camera, person) of a crop of write_run (tracks/cam<c>_<person>/<n>.jpg)."""
    camera, person = path.parent.name.split("_")
    return camera, int(person)


def test_held_out_evidence_is_what_the_footage_and_the_run_vouch_for(tmp_path: Path) -> None:
    """Whole identities are held out, drawn by the seed; every positive pair is one person
    and every negative pair two people seen at once (checked against the truth)."""
    write_identities(
        tmp_path / "run", write_run(tmp_path / "run", 24, seed=7, crops_per_tracklet=3)
    )
    material = read_run(tmp_path / "run")
    split = hold_out(material, SHARE, seed=0)
    held = {(t.camera, t.track) for t in split.held.tracklets}
    trained = {(t.camera, t.track) for t in split.train.tracklets}
    assert 0 < len(held) <= round(SHARE * 48) and not held & trained
    assert len(held | trained) == 48
    assert all((f"cam{1 - int(c[-1])}", p) in held for c, p in held)  # both sightings
    assert held == {(t.camera, t.track) for t in hold_out(material, SHARE, 0).held.tracklets}
    assert held != {(t.camera, t.track) for t in hold_out(material, SHARE, 1).held.tracklets}
    evidence = held_out_evidence(split)
    counts = evidence.counts()
    assert all(counts[kind] > 0 for kind in KINDS), counts
    span = {(t.camera, t.track): (t.start, t.end) for t in material.tracklets}
    for (i, j), kind in zip(evidence.pairs.tolist(), evidence.kinds.tolist(), strict=True):
        a, b = evidence.crops[i], evidence.crops[j]
        (ca, pa), (cb, pb) = crop_owner(a), crop_owner(b)
        assert (ca, pa) in held and (cb, pb) in held
        if kind == WITHIN:  # the first and the last crop of one tracklet
            assert a.parent == b.parent and {a.name, b.name} == {"0.jpg", "2.jpg"}
        elif kind == LINK:  # the run's identity across cameras
            assert pa == pb and ca != cb
        else:  # seen at the same time
            (sa, ea), (sb, eb) = span[(ca, pa)], span[(cb, pb)]
            assert pa != pb and sa <= eb and sb <= ea
            assert (ca == cb) == (KINDS[kind] == "same_camera_apart")


def test_the_rank_formula_is_the_pairwise_definition() -> None:
    """Weighted AUC by sorting = the weighted share of (positive, negative) pairs in which
    the negative is farther, ties half (distances rounded so that ties occur)."""
    rng = np.random.default_rng(0)
    distance = rng.random(300).round(1)
    positive = rng.random(300) < 0.3
    weight = rng.integers(0, 4, 300).astype(float)
    p, n = np.flatnonzero(positive), np.flatnonzero(~positive)
    d = distance[n][None, :] - distance[p][:, None]
    wins = (d > 0) + 0.5 * (d == 0)
    pairwise = (weight[p][:, None] * weight[n][None, :] * wins).sum() / (
        weight[p].sum() * weight[n].sum()
    )
    assert weighted_auc(distance, positive, weight) == pytest.approx(pairwise, rel=1e-12)
    assert np.isnan(weighted_auc(distance, np.zeros(300, bool), weight))


def adapt_site(folder: Path, cam1_shift: int) -> tuple[str, dict]:
    """``reid-train adapt`` on the generated site, its identities.json true or, with
    ``cam1_shift``, every cross-camera link wrong; the command's output (on one line) and
    its report."""
    run = folder / "run"
    write_identities(run, write_run(run, PEOPLE, seed=SEED, unseen=16), cam1_shift)
    config = small_adapt_config(folder, rounds=1, holdout=SHARE)
    result = CliRunner().invoke(
        app,
        ["adapt", str(run), "--out", str(folder / "adapted"), "--config", str(config)]
        + [item for setting in TRAINING for item in ("--set", setting)],
    )
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())  # the console wraps long lines
    return flat, json.loads((folder / "adapted" / "report.json").read_text())


def unseen_people_auc(model: CASN, run: Path) -> float:
    """Ground truth the site never gives: cross-camera verification AUC of 16 other people."""
    paths = sorted((run / "unseen").glob("*.jpg"))
    person = np.array([int(p.name.split("_")[0]) for p in paths])
    camera = [p.name.split("_")[1] for p in paths]
    features = extract(model, [Sample(p, 0, 0) for p in paths], torch.device("cpu")).features
    i, j = np.triu_indices(len(paths), 1)
    cross = np.array([camera[a] != camera[b] for a, b in zip(i, j, strict=True)])
    pairs = np.stack([i[cross], j[cross]], axis=1)
    distance = pair_distances(camera_centred(features.numpy(), camera), pairs)
    same = person[pairs[:, 0]] == person[pairs[:, 1]]
    return weighted_auc(distance, same, np.ones(len(pairs)))


def current_model() -> CASN:
    """The model adaptation started from: the config's untrained MobileNetV2, as seeded."""
    torch.manual_seed(0)
    config = ModelConfig(
        backbone="mobilenet_v2", pretrained=None, input_size=(64, 32), hidden_dim=32
    )
    return CASN.from_config(config, 1).eval()


@pytest.mark.slow
def test_an_adaptation_that_helps_is_adopted_and_never_saw_the_held_out(
    tmp_path: Path,
) -> None:
    """True identities: the adapted model wins on the held-out links and is exported; it
    is genuinely better (people it never saw, ground truth); no held-out tracklet was in
    any training label."""
    output, report = adapt_site(tmp_path, cam1_shift=0)
    check = report["self_validation"]
    assert check["adopted"] and check["best_round"] == 0, check
    assert check["adapted_auc"] > check["current_auc"] + check["margin"]
    assert report["model"] and (tmp_path / "adapted" / "model.onnx").is_file()
    assert check["line"] in output and check["line"].startswith("adopted the model of round 1")
    # never trained on: what the labels cover and what was held out are disjoint, and the
    # held-out tracklets are those the public split draws with the same seed
    held = {(t["camera"], t["track"]) for t in check["held_out"]}
    labels = json.loads((tmp_path / "adapted" / "round0" / "pseudo_labels.json").read_text())
    trained = {(r["camera"], r["track"]) for r in labels}
    assert held and not held & trained and len(held | trained) == 2 * PEOPLE
    split = hold_out(read_run(tmp_path / "run"), SHARE, seed=0)
    assert held == {(t.camera, t.track) for t in split.held.tracklets}
    assert report["crops"] == 4 * len(trained)
    # the report's figure is the current model's, reproduced from the public functions
    measured = SelfValidation(held_out_evidence(split), 0.005, 0).measure(current_model())
    assert measured.auc == pytest.approx(check["current_auc"], abs=1e-6)
    adapted, _ = model_from_checkpoint(tmp_path / "adapted" / "round0" / "last.pt")
    run = tmp_path / "run"
    assert unseen_people_auc(adapted, run) > unseen_people_auc(current_model(), run) + 0.05


@pytest.mark.slow
def test_misleading_pseudo_labels_are_refused(tmp_path: Path) -> None:
    """The run linked every person's cam0 tracklet with the next person's cam1 tracklet:
    training on it still makes the model better within tracklets (the figure that would
    have adopted it), but not on the held-out links, so the current model stays."""
    output, report = adapt_site(tmp_path, cam1_shift=1)
    check = report["self_validation"]
    assert not check["adopted"], check
    assert report["model"] is None and not (tmp_path / "adapted" / "model.onnx").exists()
    line = check["line"]
    assert line in output and line.startswith("kept the current model")
    assert f"{check['current_auc']:.3f}" in line and f"{check['adapted_auc']:.3f}" in line
    assert "no model written" in output
    trained = report["rounds"][0]
    assert trained["heldout_auc"] == check["adapted_auc"]
    # within tracklets it did learn (measured +0.048 and more, by machine)
    assert trained["heldout_within_auc"] > check["current_within_auc"] + 0.03
    assert check["adapted_auc"] < check["current_auc"] + check["margin"]
