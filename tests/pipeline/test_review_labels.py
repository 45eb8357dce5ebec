"""Corrections as training labels: confirmed people become site crops reid-train reads, the
rest must-link / cannot-link constraints; undone corrections say nothing; a person the
operator both confirmed and cut in two is left out of the crops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.matcher.corrections import Actor, Corrector
from pipeline.query.cli import app as cli
from reid.data.datasets import site
from tests.pipeline.people import populate

pytestmark = pytest.mark.redis

ALICE = Actor("alice", "operator")
COLOURS = {"red": (20, 20, 230), "blue": (230, 20, 20), "green": (20, 230, 20)}


def test_export_writes_confirmed_people_and_constraints(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    matcher, ids = populate(redis_url, namespace, tmp_path, COLOURS)
    corrector = Corrector(matcher.reader, matcher.config)
    corrector.confirm(ids["red"], ALICE)
    corrector.confirm(ids["blue"], ALICE)
    corrector.not_same(ids["red"], ids["blue"], ALICE)
    corrector.confirm(ids["green"], ALICE)
    corrector.split(ids["green"], ["cam2:2"], ALICE)  # contradicts the confirmation
    undone = corrector.not_same(ids["blue"], ids["green"], ALICE)
    corrector.undo(undone.event, ALICE)

    out = tmp_path / "labels"
    common = ["--redis", redis_url, "--namespace", namespace]
    result = CliRunner().invoke(
        cli, ["corrections", "export", "--out", str(out), *common, "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["people"], report["crops"], report["missing_crops"]) == (2, 4, 0)
    assert report["conflicts"] == ["person0002"]  # green: the largest groups come first
    folders = sorted(p.name for p in (out / "crops").iterdir())
    assert folders == ["person0000", "person0001"]
    names = {
        p.parent.name: sorted(q.name for q in p.parent.iterdir())
        for p in (out / "crops").rglob("*.jpg")
    }
    assert names["person0000"] == ["cam1_5.000_0-0.jpg", "cam2_25.000_0-0.jpg"]  # red
    assert names["person0001"] == ["cam1_15.000_1-0.jpg", "cam2_35.000_1-0.jpg"]  # blue
    constraints = json.loads((out / "constraints.json").read_text())
    pairs = lambda group: sorted((t["camera"], t["track"]) for t in group)  # noqa: E731
    assert [pairs(g) for g in constraints["must_link"]] == [
        [("cam1", 0), ("cam2", 0)],
        [("cam1", 1), ("cam2", 1)],
        [("cam1", 2), ("cam2", 2)],
    ]
    assert [[pairs(a), pairs(b)] for a, b in constraints["cannot_link"]] == [
        [[("cam1", 0), ("cam2", 0)], [("cam1", 1), ("cam2", 1)]],
        [[("cam1", 2)], [("cam2", 2)]],
    ]
    assert undone.event not in constraints["corrections"]
    # reid-train reads the crops as labelled site data: one identity per confirmed person
    data = site(out / "crops", train_fraction=0.5)
    assert data.num_train_pids == 1 and {s.pid for s in data.query + data.gallery} != set()
    listing = CliRunner().invoke(cli, ["corrections", "list", *common, "--json"])
    kinds = [row["kind"] for row in json.loads(listing.stdout)]
    assert kinds == ["undo", "not_same", "split", "confirm", "not_same", "confirm", "confirm"]
