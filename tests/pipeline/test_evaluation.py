"""MTMC IDF1 on hand-made cases whose scores are computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.evaluation import EvaluationError, evaluate_mtmc, link_quality


def _write(tmp_path: Path, gt: dict[str, list[tuple]], pred: list[tuple]) -> tuple[Path, Path]:
    (tmp_path / "gt").mkdir(parents=True)
    for cam, rows in gt.items():
        (tmp_path / "gt" / f"{cam}.txt").write_text(
            "".join(f"{f},{i},{x},{y},{w},{h},1,-1,-1,-1\n" for f, i, x, y, w, h in rows)
        )
    (tmp_path / "mtmc.txt").write_text(
        "".join(f"{c} {i} {f} {x} {y} {w} {h} -1 -1\n" for c, i, f, x, y, w, h in pred)
    )
    (tmp_path / "ids.json").write_text(json.dumps({"cameras": {"1": "a", "2": "b"}}))
    return tmp_path / "gt", tmp_path / "mtmc.txt"


def test_perfect_and_split_identities(tmp_path: Path) -> None:
    # one person, 2 frames in camera a and 2 in camera b
    gt = {
        "a": [(1, 7, 0, 0, 10, 20), (2, 7, 1, 0, 10, 20)],
        "b": [(1, 7, 5, 5, 10, 20), (2, 7, 6, 5, 10, 20)],
    }
    same = [
        (1, 3, 1, 0, 0, 10, 20),
        (1, 3, 2, 1, 0, 10, 20),
        (2, 3, 1, 5, 5, 10, 20),
        (2, 3, 2, 6, 5, 10, 20),
    ]
    gt_dir, pred = _write(tmp_path / "one", gt, same)
    assert evaluate_mtmc(gt_dir, pred)["idf1"] == pytest.approx(1.0)
    # the matcher failed the cross-camera link: camera b got a new id. The best one-to-one
    # id mapping keeps 2 of 4 boxes: IDTP 2, IDFP 2, IDFN 2 -> IDF1 = 2*2 / (2*2 + 2 + 2)
    split = same[:2] + [(2, 4, 1, 5, 5, 10, 20), (2, 4, 2, 6, 5, 10, 20)]
    gt_dir, pred = _write(tmp_path / "split", gt, split)
    scores = evaluate_mtmc(gt_dir, pred)
    assert (scores["idtp"], scores["idfp"], scores["idfn"]) == (2, 2, 2)
    assert scores["idf1"] == pytest.approx(0.5)


def test_missing_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="folder of <camera>.txt"):
        evaluate_mtmc(tmp_path, tmp_path / "mtmc.txt")


def test_link_quality_counts_cross_camera_links_and_pure_identities() -> None:
    # alice: a1, b1, c1; bob: a2, b2. The linker put a1 b1 b2 in X (bob's b2 wrongly),
    # c1 alone in Y, a2 in Z. X's cross-camera pairs: a1-b1 (right), a1-b2 (wrong); b1-b2
    # share a camera. X is 2/3 alice: pure; Y and Z are one track each: pure.
    person = {("a", 1): "alice", ("b", 1): "alice", ("c", 1): "alice", ("a", 2): "bob"}
    person[("b", 2)] = "bob"
    linked = {("a", 1): "X", ("b", 1): "X", ("b", 2): "X", ("c", 1): "Y", ("a", 2): "Z"}
    quality = link_quality(list(person), lambda c, t: linked[(c, t)], lambda c, t: person[(c, t)])
    assert (quality.links, quality.correct, quality.identities, quality.pure) == (2, 1, 3, 3)
    assert quality.precision == 0.5 and quality.purity == 1.0
    # one identity holding everyone: 2 of 5 tracks are bob, 3 alice -> still pure (3/5);
    # cross-camera pairs: 10 pairs minus same-camera a1-a2, b1-b2 = 8; alice-alice across
    # cameras: a1-b1, a1-c1, b1-c1 = 3, bob-bob across: a2-b2 = 1 -> 4 right
    quality = link_quality(list(person), lambda c, t: "X", lambda c, t: person[(c, t)])
    assert (quality.links, quality.correct, quality.identities, quality.pure) == (8, 4, 1, 1)
