"""Camera links learned from where and when tracks end and begin, with no appearance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.matcher import Matcher, MatcherConfig, Tracklet
from pipeline.matcher.association import associate
from pipeline.matcher.camera_links import STEP_S, CameraLinks, foot_points
from pipeline.query.cli import app as query_app
from tests.pipeline.scenes import unit

WIDTH, HEIGHT, BOX_H = 640.0, 480.0, 100.0
EXIT_A = (WIDTH, 400.0)  # crossers leave camera a at its right edge...
ENTRY_B = (0.0, 380.0)  # ...and appear in camera b at its left edge
TRANSIT = (8.0, 1.0)  # mean, sd (s) of the walk through the blind zone


def _tracklet(
    camera: str, track: int, t0: float, t1: float, p0: tuple, p1: tuple, feature: np.ndarray
) -> Tracklet:
    times = np.linspace(t0, t1, 10)
    x = np.interp(times, [t0, t1], [p0[0], p1[0]])
    y = np.interp(times, [t0, t1], [p0[1], p1[1]])
    path = np.stack([times, x - 20, y - BOX_H, x + 20, y], axis=1)
    return Tracklet(camera, track, t0, t1, feature[None], path=path)


def blind_zone_scene(
    crossers: int = 40,
    strangers: int = 40,
    duration: float = 900.0,
    looks: float | None = None,
    seed: int = 0,
) -> tuple[list[Tracklet], list[int]]:
    """Camera a, a blind zone, camera b. ``crossers`` walk a's view left to right, through
    the blind zone (:data:`TRANSIT`), then b's left edge to its top; ``strangers`` in each
    camera come and go elsewhere (a: top to bottom-left, b: right edge to top), unrelated.
    Features: one for everyone (``looks`` None), else each person's direction plus
    ``looks`` noise. Returns tracklets and true person ids."""
    rng = np.random.default_rng(seed)
    dim = 16
    tracklets, truth = [], []

    def feature(person: int) -> np.ndarray:
        if looks is None:
            return unit(np.ones(dim))
        centre = unit(np.random.default_rng(1000 + person).standard_normal(dim))
        return unit(centre + looks * rng.standard_normal(dim))

    for p in range(crossers):
        t = float(rng.uniform(0, duration - 40))
        leave = t + float(rng.uniform(6, 10))
        y = EXIT_A[1] + float(rng.normal(0, 8))
        tracklets.append(_tracklet("a", p, t, leave, (0.0, y), (EXIT_A[0], y), feature(p)))
        arrive = leave + max(float(rng.normal(*TRANSIT)), 3.0)
        y = ENTRY_B[1] + float(rng.normal(0, 8))
        top = (320.0 + float(rng.normal(0, 20)), 150.0)
        tracklets.append(_tracklet("b", p, arrive, arrive + 8, (ENTRY_B[0], y), top, feature(p)))
        truth += [p, p]
    for k, camera in enumerate("ab" * strangers):
        p = crossers + k
        t = float(rng.uniform(0, duration - 10))
        start, end = (
            ((320.0, 150.0), (100.0, HEIGHT)) if camera == "a" else ((WIDTH, 300.0), (320.0, 150.0))
        )
        jitter = rng.normal(0, 10, 4)
        tracklets.append(
            _tracklet(
                camera,
                p,
                t,
                t + float(rng.uniform(5, 9)),
                (start[0] + jitter[0], start[1] + jitter[1]),
                (end[0] + jitter[2], end[1] + jitter[3]),
                feature(p),
            )
        )
        truth.append(p)
    return tracklets, truth


def cross_camera_links(
    labels: list[int], truth: list[int], tracklets: list[Tracklet]
) -> tuple[int, int]:
    """Pairs of tracks in two cameras given one identity, and how many are one person."""
    made = right = 0
    for i in range(len(tracklets)):
        for j in range(i + 1, len(tracklets)):
            if labels[i] == labels[j] and tracklets[i].camera_id != tracklets[j].camera_id:
                made += 1
                right += truth[i] == truth[j]
    return made, right


def learned_in_redis(
    tracklets: list[Tracklet], redis_url: str, namespace: str, config: MatcherConfig
) -> dict:
    """Decide ``tracklets`` in a namespace, re-associate, and read back what
    `reid-query camera-links --json` shows."""
    matcher = Matcher(redis_url, namespace, config)
    for tracklet in sorted(tracklets, key=lambda t: t.end):
        matcher.submit(tracklet)
    matcher.relink()
    args = ["--redis", redis_url, "--namespace", namespace]
    shown = CliRunner().invoke(query_app, ["camera-links", *args, "--json"])
    assert shown.exit_code == 0, shown.output
    return json.loads(shown.output)


def _zone_near(links: CameraLinks, kind: str, camera: str, point: tuple) -> int:
    zones = (links.exit_zones if kind == "exit" else links.entry_zones)[camera]
    return int(zones.assign(np.array([point]))[0])


def test_zones_and_transit_times_are_recovered_without_appearance() -> None:
    tracklets, truth = blind_zone_scene(seed=1)
    links = CameraLinks.fit(tracklets, 0.0, 600.0)
    _, exits = foot_points(tracklets)
    exit_a, entry_b = (
        _zone_near(links, "exit", "a", EXIT_A),
        _zone_near(links, "entry", "b", ENTRY_B),
    )
    # the zones hold exactly the crossers' events (crossers' exits from a, entries into b)
    crossers = np.array([truth.count(p) == 2 for p in truth])
    in_a, in_b = (
        np.array([t.camera_id == "a" for t in tracklets]),
        np.array([t.camera_id == "b" for t in tracklets]),
    )
    assert set(np.flatnonzero(in_a & (links.exit_of == exit_a))) == set(
        np.flatnonzero(in_a & crossers)
    )
    assert set(np.flatnonzero(in_b & (links.entry_of == entry_b))) == set(
        np.flatnonzero(in_b & crossers)
    )
    # where the zone's mean foot point lies, against the points it holds
    zone = links.exit_zones["a"]
    mean = zone.means[exit_a] * zone.scale + zone.centre
    np.testing.assert_allclose(mean, exits[in_a & crossers].mean(axis=0), atol=5.0)
    # the transit density peaks at the walk's time; the transitions found above chance are
    # a lower bound of the people who crossed (the allowance for noise is taken off)
    density = links.same[("a", "b")][exit_a, entry_b]
    gaps = np.array([tracklets[2 * p + 1].start - tracklets[2 * p].end for p in range(40)])
    mode = (int(np.argmax(density)) + 0.5) * STEP_S
    assert abs(mode - np.median(gaps)) < 1.0
    assert links.same[("a", "b")][exit_a, entry_b].sum() > 0.9  # nearly all the excess
    assert links.transitions.get(("b", "a"), 0.0) < 3  # nobody walks back
    assert 0.5 * 40 < links.transitions[("a", "b")] <= 40
    # a crosser's move scores for one person; a stranger's pair at the same gap against
    crossing, _ = links.llr_many(np.arange(0, 80, 2), np.arange(1, 80, 2))
    assert np.median(crossing) > 2.0
    strangers_a = np.flatnonzero(in_a & ~crossers)
    strangers_b = np.flatnonzero(in_b & ~crossers)
    stranger_llr = [
        links.llr(int(x), int(y))
        for x in strangers_a
        for y in strangers_b
        if 0 < tracklets[y].start - tracklets[x].end < 20
    ]
    assert stranger_llr and max(v for v in stranger_llr if v is not None) < 0.0


def test_blind_zone_is_linked_where_appearance_alone_cannot() -> None:
    tracklets, truth = blind_zone_scene(
        crossers=30, strangers=30, duration=600.0, looks=0.5, seed=2
    )

    def cross_links(config: MatcherConfig) -> tuple[int, int]:
        return cross_camera_links(associate(tracklets, config).labels, truth, tracklets)

    # the camera links alone (the hand-overs, on by default, link it too: test_handover.py)
    looks_only = cross_links(MatcherConfig(camera_links=False, handovers=False))
    with_links = cross_links(MatcherConfig(camera_links=True, handovers=False))
    assert looks_only[1] <= 0.2 * looks_only[0]  # appearance alone links the wrong people
    assert with_links[1] >= 6 and with_links[1] >= 0.8 * with_links[0]


@pytest.mark.redis
def test_reid_query_shows_the_zones_and_links_re_association_learned(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """Zones and links used to live only inside one re-association; now the namespace keeps
    them and `reid-query topology` / `camera-links` show them, in pixels and seconds."""
    tracklets, _ = blind_zone_scene(crossers=30, strangers=30, duration=600.0, looks=0.5, seed=2)
    learned = learned_in_redis(tracklets, redis_url, namespace, MatcherConfig(camera_links=True))
    args = ["--redis", redis_url, "--namespace", namespace]
    (link,) = learned["links"]  # the walk from a's right edge to b's left edge, nothing else
    assert (link["source"], link["target"]) == ("a", "b")
    zone = {(z["camera"], z["kind"], z["zone"]): z for z in learned["zones"]}
    exit_a, entry_b = zone["a", "exit", link["exit_zone"]], zone["b", "entry", link["entry_zone"]]
    assert abs(exit_a["x"] - EXIT_A[0]) < 10 and abs(exit_a["y"] - EXIT_A[1]) < 10
    assert abs(entry_b["x"] - ENTRY_B[0]) < 10 and abs(entry_b["y"] - ENTRY_B[1]) < 10
    # transitions above chance less a noise allowance: a lower bound of the 30 who crossed
    assert abs(link["transit_s"] - TRANSIT[0]) < 1.0 and 5 <= link["transitions"] <= 30
    plot = tmp_path / "topology.png"
    table = CliRunner().invoke(query_app, ["topology", *args, "--plot", str(plot)])
    assert table.exit_code == 0 and "camera links from exits and entries" in table.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
