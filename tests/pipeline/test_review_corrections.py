"""Operators' corrections in Redis: merge, split, confirm, not-same; who and when; exact
undo; concurrent corrections of the same identities (one wins, nothing lost)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import redis

from pipeline.matcher import IdentityReader, Matcher, Tracklet
from pipeline.matcher.corrections import (
    Actor,
    CorrectionConflict,
    CorrectionError,
    Corrector,
    UnknownTarget,
)
from pipeline.query.service import QueryService
from tests.pipeline.people import COLOURS, ColourEmbedder, populate

pytestmark = pytest.mark.redis

ALICE = Actor("alice", "operator")


@pytest.fixture
def gallery(redis_url: str, namespace: str, tmp_path: Path) -> tuple[Matcher, dict[str, str]]:
    return populate(redis_url, namespace, tmp_path)


def red_crop() -> np.ndarray:
    return np.full((64, 32, 3), COLOURS["red"], np.uint8)


def state(client: redis.Redis, namespace: str) -> dict[str, object]:
    """Every identity, exemplar, sighting and tracklet key of the namespace with its
    contents, and the identities ZSET with scores: what an exact undo must give back."""
    found: dict[str, object] = {}
    for key in client.scan_iter(f"{{{namespace}}}:v1:*", count=1000):
        name = key.decode()
        kind = client.type(key).decode()
        if name.endswith(("version", "events", "corrections")) or ":correction:" in name:
            continue  # counters and logs move on; undo appends to them
        if kind == "hash":
            found[name] = client.hgetall(key)
        elif kind == "zset":
            found[name] = client.zrange(key, 0, -1, withscores=True)
        else:
            found[name] = client.get(key)
    return found


def refs(matcher: Matcher, identity: str) -> list[str]:
    return [f"{s.camera_id}:{s.track_id}" for s in matcher.reader.trajectory(identity)]


def test_merge_moves_every_sighting_and_the_old_id_resolves(gallery) -> None:
    matcher, ids = gallery
    red, blue = ids["red"], ids["blue"]
    correction = Corrector(matcher.reader, matcher.config).merge(red, blue, ALICE)
    assert (correction.kind, correction.identity, correction.other) == ("merge", red, blue)
    assert (correction.who, correction.role, correction.state) == ("alice", "operator", "applied")
    assert matcher.reader.resolve(red) == blue
    assert sorted(refs(matcher, blue)) == ["cam1:0", "cam1:1", "cam2:0", "cam2:1"]
    assert matcher.identity_of("cam2", 0) == blue
    assert {name for name, _ in matcher.reader.identities()} == {blue}
    view = QueryService(matcher.reader).identity(red).as_dict()
    assert view["identity"] == blue and view["merged_from"] == red
    assert matcher.reader.identity_info(blue)["tracklets"] == "4"
    # the live matcher's index follows: red's colour now links to blue
    features = ColourEmbedder().embed([red_crop()]).features
    assert matcher.submit(Tracklet("cam1", 7, 100.0, 105.0, features)) == blue


def test_undo_of_a_merge_restores_exactly_the_state_before(gallery, namespace: str) -> None:
    matcher, ids = gallery
    before = state(matcher.redis, namespace)
    corrector = Corrector(matcher.reader, matcher.config)
    merge = corrector.merge(ids["red"], ids["blue"], ALICE)
    assert state(matcher.redis, namespace) != before
    undone = corrector.undo(merge.event, Actor("bob", "operator"))
    assert undone.state == "undone" and undone.undone_by
    assert state(matcher.redis, namespace) == before
    assert matcher.reader.resolve(ids["red"]) == ids["red"]
    fresh = Matcher(client=matcher.redis, namespace=namespace)  # bootstraps from Redis
    hits = fresh.gallery.similar(ColourEmbedder().embed([red_crop()]).features, 2)
    assert hits[0][0] == ids["red"]
    # the live matcher's index follows the undo too
    assert (
        matcher.gallery.similar(ColourEmbedder().embed([red_crop()]).features, 1)[0][0]
        == ids["red"]
    )
    log = corrector.log()
    assert [row["kind"] for row in log] == ["undo", "merge"]
    assert log[0]["who"] == "bob" and log[0]["of"] == merge.event
    with pytest.raises(CorrectionConflict, match="already undone"):
        corrector.undo(merge.event, ALICE)


def test_split_founds_an_identity_and_undo_folds_it_back(gallery, namespace: str) -> None:
    matcher, ids = gallery
    red = ids["red"]
    before = state(matcher.redis, namespace)
    corrector = Corrector(matcher.reader, matcher.config)
    split = corrector.split(red, ["cam2:0"], ALICE)
    new = split.other
    assert new not in ids.values()
    assert refs(matcher, red) == ["cam1:0"] and refs(matcher, new) == ["cam2:0"]
    assert matcher.reader.identity_info(new)["split_from"] == red
    assert matcher.identity_of("cam2", 0) == new
    assert [[t["track"] for t in g] for g in split.groups] == [[0], [0]]
    assert [[t["camera"] for t in g] for g in split.groups] == [["cam1"], ["cam2"]]
    corrector.undo(split.event, ALICE)
    assert state(matcher.redis, namespace) == before
    assert matcher.reader.trajectory(new) == []


def test_undo_is_refused_once_the_matcher_changed_what_the_merge_touched(gallery) -> None:
    matcher, ids = gallery
    corrector = Corrector(matcher.reader, matcher.config)
    merge = corrector.merge(ids["red"], ids["blue"], ALICE)
    features = ColourEmbedder().embed([red_crop()]).features
    assert matcher.submit(Tracklet("cam1", 9, 200.0, 205.0, features)) == ids["blue"]
    after_link = sorted(refs(matcher, ids["blue"]))
    with pytest.raises(CorrectionConflict, match="changed since"):
        corrector.undo(merge.event, ALICE)
    assert sorted(refs(matcher, ids["blue"])) == after_link  # nothing written
    assert corrector.get(merge.event).state == "applied"


@pytest.mark.parametrize("opposed", [False, True], ids=["same-merge", "opposed-merges"])
def test_concurrent_merges_of_the_same_identities_one_wins(
    gallery, redis_url: str, namespace: str, opposed: bool
) -> None:
    matcher, ids = gallery
    red, blue = ids["red"], ids["blue"]
    start = threading.Barrier(8)
    won, refused, failed = [], [], []

    def attempt(n: int) -> None:
        corrector = Corrector(IdentityReader(redis_url, namespace))  # its own connection
        source, target = (blue, red) if opposed and n % 2 else (red, blue)
        start.wait()
        try:
            won.append(corrector.merge(source, target, Actor(f"op{n}", "operator")))
        except CorrectionConflict as exc:
            refused.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - anything else fails the test below
            failed.append(exc)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failed and len(won) == 1 and len(refused) == 7
    assert all("merged into" in message for message in refused)
    survivor = won[0].other
    assert sorted(refs(matcher, survivor)) == ["cam1:0", "cam1:1", "cam2:0", "cam2:1"]
    assert {matcher.reader.resolve(red), matcher.reader.resolve(blue)} == {survivor}
    assert [row["kind"] for row in Corrector(matcher.reader, matcher.config).log()] == ["merge"]


def test_confirm_and_not_same_are_recorded_and_undone(gallery) -> None:
    matcher, ids = gallery
    corrector = Corrector(matcher.reader, matcher.config)
    confirm = corrector.confirm(ids["red"], ALICE)
    apart = corrector.not_same(ids["red"], ids["blue"], Actor("bob", "operator"))
    assert [len(g) for g in confirm.groups] == [2]
    assert [{t["camera"] for t in g} for g in apart.groups] == [{"cam1", "cam2"}] * 2
    assert [c.event for c in corrector.applied()] == [confirm.event, apart.event]
    corrector.undo(confirm.event, ALICE)
    assert [c.event for c in corrector.applied()] == [apart.event]
    partial = corrector.confirm(ids["blue"], ALICE, ["cam2:1"])
    assert [(t["camera"], t["track"]) for t in partial.groups[0]] == [("cam2", 1)]


def test_bad_corrections_name_what_is_wrong(gallery) -> None:
    matcher, ids = gallery
    corrector = Corrector(matcher.reader, matcher.config)
    red, blue = ids["red"], ids["blue"]
    with pytest.raises(CorrectionError, match="into itself"):
        corrector.merge(red, red, ALICE)
    with pytest.raises(UnknownTarget, match="'p-nobody'"):
        corrector.merge("p-nobody", blue, ALICE)
    with pytest.raises(CorrectionError, match="'cam9:4' is not a sighting"):
        corrector.split(red, ["cam9:4"], ALICE)
    with pytest.raises(CorrectionError, match="leaves nothing behind"):
        corrector.split(red, ["cam1:0", "cam2:0"], ALICE)
    with pytest.raises(CorrectionError, match="at least one"):
        corrector.split(red, [], ALICE)
    with pytest.raises(UnknownTarget, match="'c-none'"):
        corrector.undo("c-none", ALICE)
    with pytest.raises(CorrectionError, match="differ from itself"):
        corrector.not_same(red, red, ALICE)
    corrector.merge(red, blue, ALICE)
    with pytest.raises(CorrectionConflict, match=f"merged into '{blue}'"):
        corrector.split(red, ["cam1:0"], ALICE)
