"""MTMC IDF1 on hand-made cases whose scores are computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.evaluation import EvaluationError, evaluate_mtmc


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
