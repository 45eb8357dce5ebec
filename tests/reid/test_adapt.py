"""reid-train adapt: run folders read with clear errors, pseudo-identities that respect every
cannot-link, and the whole loop on a small generated site."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision import models as tvm
from typer.testing import CliRunner

from reid.data.datasets import DatasetError
from reid.data.run_folder import read_run, read_runs
from reid.models.checkpoint import model_from_checkpoint
from reid.training.adapt import pseudo_identities
from reid.training.cli import app
from reid.training.constraints import honour, read_constraints
from tests.reid.sites import small_adapt_config, write_identities, write_run


def test_run_folders_that_cannot_be_read_say_why(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        read_run(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no tracklets.jsonl"):
        read_run(tmp_path)
    write_run(tmp_path / "run", 3, seed=0)
    lines = (tmp_path / "run" / "tracklets.jsonl").read_text()
    (tmp_path / "run" / "tracklets.jsonl").write_text(lines + '{"camera": "cam0", "tra')
    with pytest.raises(DatasetError, match=r"tracklets.jsonl:7: .*half-written"):
        read_run(tmp_path / "run")
    (tmp_path / "run" / "tracklets.jsonl").write_text(lines)
    (tmp_path / "run" / "tracks" / "cam1_2" / "3.jpg").unlink()
    with pytest.raises(DatasetError, match="1 crop files are missing"):
        read_run(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "tracklets.jsonl").write_text("")
    with pytest.raises(DatasetError, match="holds no tracklets"):
        read_run(tmp_path / "empty")


def test_pseudo_identities_never_join_people_seen_at_once(tmp_path: Path) -> None:
    """Even with features that would glue everyone together, no cluster holds two tracklets
    of one run seen at once (one camera, or the two cameras, which do not overlap): checked
    by brute force over every pair."""
    write_run(tmp_path / "a", 12, seed=1)
    write_run(tmp_path / "b", 12, seed=2)
    material = read_runs([tmp_path / "a", tmp_path / "b"])
    rng = np.random.default_rng(0)
    features = np.ones((len(material.tracklets), 16)) + 0.01 * rng.standard_normal((24 * 2, 16))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    labels, threshold, negatives = pseudo_identities(features.astype(np.float32), material, 10.0)
    assert threshold is not None and negatives > 20
    together = 0
    for i, a in enumerate(material.tracklets):
        for j, b in enumerate(material.tracklets[i + 1 :], i + 1):
            if a.run == b.run and a.start <= b.end and b.start <= a.end:
                together += 1
                assert labels[i] != labels[j]
    assert together == negatives
    assert len(set(labels)) < len(labels)  # it did merge where nothing forbade it


def test_adapt_starts_from_public_weights_with_their_architecture(tmp_path: Path) -> None:
    """--init with --init-format imports a torchreid ResNet50 first; adaptation then trains
    that ResNet50 (not the config's MobileNetV2) at the size the import was made for."""
    write_run(tmp_path / "run", 4, seed=4, crops_per_tracklet=2)
    public = tmp_path / "torchreid.pth"
    torch.save({"state_dict": tvm.resnet50(weights=None).state_dict()}, public)
    out = tmp_path / "adapted"
    result = CliRunner().invoke(
        app,
        ["adapt", str(tmp_path / "run"), "--out", str(out), "--init", str(public)]
        + [
            "--init-format",
            "torchreid",
            "--config",
            str(small_adapt_config(tmp_path, 1, holdout=0)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "imported.pt").is_file()
    model, _ = model_from_checkpoint(out / "round0" / "last.pt")
    assert model.backbone_name == "resnet50" and model.feature_dim == 2048


def test_adapt_end_to_end_writes_a_usable_model(tmp_path: Path) -> None:
    """Round 0 starts from the run's own final identities (identities.json), later rounds
    from clustering; the model comes out exported and loadable; a rerun resumes, but only
    the rounds trained on the same pseudo-labels."""
    write_identities(tmp_path / "run", write_run(tmp_path / "run", 10, seed=3))
    config = small_adapt_config(tmp_path, rounds=2, holdout=0.0)
    out = tmp_path / "adapted"
    # an operator said person 0's two sightings are different people
    constraints = write_constraints(tmp_path / "c.json", [], [([("cam0", 0)], [("cam1", 0)])])
    result = CliRunner().invoke(
        app,
        ["adapt", str(tmp_path / "run"), "--out", str(out), "--config", str(config)]
        + ["--constraints", str(constraints)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["tracklets"] == 20 and report["crops"] == 80
    assert report["constraints"] == {"must_link_pairs": 0, "cannot_link_pairs": 1}
    assert [r["round"] for r in report["rounds"]] == [0, 1]
    first = json.loads((out / "round0" / "pseudo_labels.json").read_text())
    assert len({(r["track"], r["label"]) for r in first}) == 11  # person 0 cut in two
    assert report["rounds"][0]["cross_camera_clusters"] == 9
    for labels in (first, json.loads((out / "round1" / "pseudo_labels.json").read_text())):
        person0 = {r["camera"]: r["label"] for r in labels if r["track"] == 0}
        assert person0["cam0"] != person0["cam1"]
    assert len(json.loads((out / "round1" / "pseudo_labels.json").read_text())) == 20
    for suffix in (".onnx", ".onnx.json", ".consistency.pt"):
        assert (out / f"model{suffix}").is_file()
    from reid.runtime import load_embedder

    crop = cv2.imread(str(tmp_path / "run" / "tracks" / "cam0_0" / "0.jpg"))
    features = load_embedder(out / "model.onnx", "ort").embed([crop]).features
    assert features.shape[0] == 1 and np.isclose(np.linalg.norm(features), 1.0, atol=1e-4)
    # resumable: a second call finds every round trained and only re-exports
    again = CliRunner().invoke(
        app,
        ["adapt", str(tmp_path / "run"), "--out", str(out), "--config", str(config)]
        + ["--constraints", str(constraints)],
    )
    assert again.exit_code == 0 and again.output.count("already trained") == 2
    # other pseudo-labels (without the operator's cut): trained again, not taken over
    other = CliRunner().invoke(
        app, ["adapt", str(tmp_path / "run"), "--out", str(out), "--config", str(config)]
    )
    assert other.exit_code == 0 and "already trained" not in other.output


def write_constraints(path: Path, must: list, cannot: list) -> Path:
    """constraints.json as reid-query corrections export writes it."""
    named = lambda group: [{"camera": c, "track": t} for c, t in group]  # noqa: E731
    path.write_text(
        json.dumps(
            {
                "must_link": [named(g) for g in must],
                "cannot_link": [[named(a), named(b)] for a, b in cannot],
                "conflicts": [],
                "corrections": [],
            }
        )
    )
    return path


def test_operator_constraints_join_and_never_cross(tmp_path: Path) -> None:
    """A must-link joins tracklets whose features are far apart; a cannot-link keeps apart
    tracklets whose features are one: in the clustering of every round, and over the run's
    own identities in round 0."""
    truth = write_run(tmp_path / "run", 12, seed=5)
    material = read_run(tmp_path / "run")
    index = {(t.camera, t.track): n for n, t in enumerate(material.tracklets)}
    path = write_constraints(
        tmp_path / "constraints.json",
        must=[[("cam0", 3), ("cam1", 4), ("cam0", 99)]],  # track 99 is in no run: skipped
        cannot=[([("cam0", 5)], [("cam1", 5)])],
    )
    constraints = read_constraints(path, material)
    assert constraints.must.tolist() == [[index[("cam0", 3)], index[("cam1", 4)]]]
    assert constraints.cannot.tolist() == [[index[("cam0", 5)], index[("cam1", 5)]]]
    rng = np.random.default_rng(1)
    apart = rng.standard_normal((len(material.tracklets), 64)).astype(np.float32)
    apart /= np.linalg.norm(apart, axis=1, keepdims=True)  # nobody looks like anybody
    plain, _, _ = pseudo_identities(apart, material, 0.05)
    joined, _, _ = pseudo_identities(apart, material, 0.05, constraints)
    a, b = index[("cam0", 3)], index[("cam1", 4)]
    assert plain[a] != plain[b] and joined[a] == joined[b]
    glued = np.ones_like(apart)  # everybody looks alike
    glued /= np.linalg.norm(glued, axis=1, keepdims=True)
    labels, _, _ = pseudo_identities(glued, material, 10.0, constraints)
    assert labels[index[("cam0", 5)]] != labels[index[("cam1", 5)]]
    assert labels[a] == labels[b]
    # round 0 starts from the run's own identities: the operator still has the last word
    own = [t.track for t in material.tracklets]  # person p is track p in both cameras
    assert sorted(own) == sorted(truth)
    fixed = honour(own, constraints)
    assert fixed[index[("cam0", 5)]] != fixed[index[("cam1", 5)]]
    assert fixed[a] == fixed[b] == fixed[index[("cam1", 3)]] == fixed[index[("cam0", 4)]]
    assert len(set(fixed)) == len(set(own))  # person 5 cut in two, persons 3 and 4 joined
    with pytest.raises(DatasetError, match="not a constraints file"):
        read_constraints(write_constraints(tmp_path / "x.json", [], []).with_name("nope"), material)


def test_adapt_finds_its_shipped_settings_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default settings used to be a path relative to the checkout ("configs/train/
    adapt_mobilenet.yaml: file not found" anywhere else, and in a wheel install)."""
    write_run(tmp_path / "run", 4, seed=4, crops_per_tracklet=2)
    monkeypatch.chdir(tmp_path)
    small = ["rounds=1", "epochs_per_round=1", "train.model.input_size=[64,32]", "holdout=0"]
    result = CliRunner().invoke(
        app,
        ["adapt", str(tmp_path / "run"), "--out", str(tmp_path / "adapted")]
        + [item for setting in small for item in ("--set", setting)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "adapted" / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [0]
