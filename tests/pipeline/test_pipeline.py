"""reid-pipeline end to end on the synthetic scene (precomputed detections, real Redis)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_pipeline_config
from pipeline.evaluation import evaluate_mtmc, oracle_identities
from pipeline.matcher import RedisUnavailable
from pipeline.matcher.keys import Keys
from pipeline.prometheus import metrics_registry, serve_metrics
from pipeline.rematch import rematch
from pipeline.run_record import write_mtmc
from pipeline.run_state import RunState
from pipeline.runner import SESSION_SPAN, Pipeline
from reid.config import ConfigError
from reid.data.datasets import site
from reid_demo.scene import generate_scene
from tests.pipeline.runs import run_pipeline
from tests.pipeline.scenes import same_partition
from tests.pipeline.servers import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_scene(
        tmp_path_factory.mktemp("scene"), people=4, cameras=2, duration=24, seed=5
    )


def wait_for_frames(pipeline: Pipeline, frames: int) -> None:
    """Until the running pipeline has processed more than ``frames`` frames in all."""
    while sum(c.frames for c in pipeline.state.cameras.values()) <= frames:
        time.sleep(0.002)


def test_cli_runs_end_to_end_and_writes_every_output(
    scene: Path, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = run_pipeline(scene, redis_url, out, namespace)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 2 * 240 and summary["identities"] >= 1
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert {e["type"] for e in events} <= {"new_identity", "link", "update", "merge", "split"}
    assert {e["type"] for e in events} >= {"new_identity"}
    rows = [line.split() for line in (out / "mtmc.txt").read_text().splitlines()]
    assert rows and all(len(r) == 9 and r[7:] == ["-1", "-1"] for r in rows)
    ids = json.loads((out / "ids.json").read_text())
    assert set(ids["cameras"].values()) == {"cam0", "cam1"}
    assert {r[1] for r in rows} <= set(ids["identities"])
    # mtmc.txt, crops/ and the summary all carry the identities as re-association left them
    assert len(ids["identities"]) == summary["identities"]
    assert {p.name for p in (out / "crops").iterdir()} == set(ids["identities"].values())
    names = [p.name for p in (out / "crops").rglob("*.jpg")]
    assert names and all(re.fullmatch(r"cam\d_\d+\.\d{3}_\d+-\d+\.jpg", n) for n in names)
    assert sorted(p.name for p in (out / "video").iterdir()) == ["cam0.mp4", "cam1.mp4"]
    # the crop folders are site training data
    crops = site(out / "crops", train_fraction=0.5) if summary["identities"] > 1 else None
    assert crops is None or len(crops.train) > 0
    gt = scene.parent / "gt"
    scores = evaluate_mtmc(gt, out / "mtmc.txt")
    assert scores["idtp"] + scores["idfp"] == len(rows)  # every reported box, counted once
    assert scores["idtp"] + scores["idfn"] == sum(
        len(f.read_text().split()) for f in gt.glob("*.txt")
    )
    # the same tracks linked perfectly: at least as good, and good (detections are given)
    perfect = evaluate_mtmc(gt, write_mtmc(out, oracle_identities(gt, out), tmp_path / "o.txt"))
    assert perfect["idf1"] >= max(scores["idf1"], 0.8)


def test_stop_flushes_open_tracklets(
    scene: Path, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    config = load_pipeline_config(
        scene,
        [
            f"redis.url={redis_url}",
            f"redis.namespace={namespace}",
            f"outputs.dir={tmp_path / 'run'}",
            "tracklets.summary_every_s=1000",
        ],
    )
    pipeline = Pipeline(config)
    stop = threading.Event()

    def stop_after_some_frames() -> None:
        wait_for_frames(pipeline, 120)
        stop.set()

    threading.Thread(target=stop_after_some_frames, daemon=True).start()
    summary = pipeline.run(stop)
    assert summary["frames"] < 480
    # nothing was summarised periodically, so every decision comes from the flush
    assert summary["decisions"] and sum(summary["decisions"].values()) >= 1
    text = metrics_registry(pipeline.state).get_sample_value
    assert text("reid_camera_frames_total", {"camera": "cam0"}) > 0
    assert text("reid_identities") == summary["identities"]


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "cams.yaml"
    bad.write_text(
        "cameras:\n  - id: a\n    source: x.mp4\n    crop: [0, 0, -5, 10]\n"
        "  - id: a\n    source: y.mp4\nmatcher:\n  link_threshold: 2\n"
    )
    with pytest.raises(ConfigError) as info:
        load_pipeline_config(bad)
    message = str(info.value)
    assert "cameras.0.crop" in message and "matcher.link_threshold" in message
    bad.write_text("cameras:\n  - id: a\n    source: x.mp4\n  - id: a\n    source: y.mp4\n")
    with pytest.raises(ConfigError, match="repeated: \\['a'\\]"):
        load_pipeline_config(bad)
    result = CliRunner().invoke(app, ["--cameras", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "file not found" in " ".join(result.output.split())


def test_publish_only_needs_a_shared_redis(tmp_path: Path) -> None:
    """It used to publish into a private embedded Redis and exit 0."""
    cams = tmp_path / "cams.yaml"
    cams.write_text("cameras:\n  - id: a\n    source: nowhere.mp4\ndetector:\n  kind: hog\n")
    result = CliRunner().invoke(app, ["--cameras", str(cams), "--publish-only", "--no-live-table"])
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "give its URL (--redis or redis.url)" in message


def test_metrics_listen_where_configured(tmp_path: Path) -> None:
    """Loopback by default (it used to be every interface, with no way to change it)."""
    cams = tmp_path / "cams.yaml"
    cams.write_text("cameras:\n  - id: a\n    source: x.mp4\n")
    assert load_pipeline_config(cams).metrics_host == "127.0.0.1"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state = RunState({})
    serve_metrics(state, port)
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # listening on loopback
    addresses = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    outside = sorted(a for a in addresses if not a.startswith("127."))
    if outside:  # an interface other than loopback: nothing listens there
        with pytest.raises(OSError):
            socket.create_connection((outside[0], port), timeout=2)


def test_unreachable_camera_file_is_reported(tmp_path: Path) -> None:
    cams = tmp_path / "cams.yaml"
    cams.write_text(
        "cameras:\n  - id: a\n    source: nowhere.mp4\n"
        "redis:\n  url: redis://127.0.0.1:1/0\n"  # nothing there: cameras are checked first
    )
    result = CliRunner().invoke(app, ["--cameras", str(cams), "--no-live-table"])
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "camera a: video file nowhere.mp4 does not exist" in message


def test_outputs_survive_redis_gone_at_the_end(
    scene: Path, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """If Redis is unreachable when the run ends (the final re-association and the final
    identities need it), the outputs are still written, re-associated in memory from the
    run's records (tests/faults/test_redis_faults.py checks they match a clean run's)."""
    out = tmp_path / "run"
    config = load_pipeline_config(
        scene,
        [f"redis.url={redis_url}", f"redis.namespace={namespace}", f"outputs.dir={out}"],
    )
    pipeline = Pipeline(config)

    def unreachable(since: float | None = None, epoch: str | None = None) -> None:
        raise RedisUnavailable("Redis unavailable after retries: connection refused")

    pipeline.sink.matcher.relink = unreachable
    summary = pipeline.run()
    ids = json.loads((out / "ids.json").read_text())["identities"]
    assert summary["identities"] == len(set(ids.values())) > 0
    assert (out / "mtmc.txt").read_text() and (out / "summary.json").is_file()
    assert pipeline._embedded == {}  # no embedding outlives its track
    assert pipeline.outputs.live_identity == {}  # nor its identity (sightings.jsonl has it)


def test_rematch_with_the_same_model_reproduces_the_run(
    scene: Path, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """Re-matching a finished run from its recorded crops (no detection) with the model it
    ran with gives back the same identities, ids included: the record is complete."""
    out = tmp_path / "run"
    config = load_pipeline_config(
        scene,
        [
            f"redis.url={redis_url}",
            f"redis.namespace={namespace}",
            f"outputs.dir={out}",
            "outputs.video=false",
        ],
    )
    Pipeline(config).run()
    before = {(r["camera"], r["track"]): r["identity"] for r in _identities(out)}
    mtmc = (out / "mtmc.txt").read_text()
    final, report = rematch(out, config)
    assert final == before and report.tracklets == len(before)
    assert {(r["camera"], r["track"]): r["identity"] for r in _identities(out)} == before
    assert (out / "mtmc.txt").read_text() == mtmc


def _identities(run: Path) -> list[dict]:
    return json.loads((run / "identities.json").read_text())


def test_a_second_run_never_takes_over_the_first_runs_tracks(
    scene: Path, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """Track ids restart at 1 in every run; a second run (or a restarted worker) in the same
    namespace still gets records of its own instead of updating the first run's, ends with
    the identities the first run ended with (its re-association never mistakes the first
    run's tracklets of the same footage for other people seen at the same moments), and
    leaves the first run's identities as they were."""
    runs = []
    first_final: dict[tuple[str, int], str | None] = {}
    for n in (1, 2):
        config = load_pipeline_config(
            scene,
            [
                f"redis.url={redis_url}",
                f"redis.namespace={namespace}",
                f"outputs.dir={tmp_path / f'run{n}'}",
                "outputs.video=false",
            ],
        )
        pipeline = Pipeline(config)
        runs.append((pipeline.run(), pipeline))
        if n == 1:
            first_final = {
                k: pipeline.sink.matcher.identity_of(*k) for k in pipeline.outputs.recorded()
            }
    (_, one), (_, two) = runs
    assert two.session > one.session and one.epoch != two.epoch
    shift = (two.session - one.session) * SESSION_SPAN
    matcher = two.sink.matcher
    assert {k: matcher.identity_of(*k) for k in first_final} == first_final  # untouched
    second = {(c, t - shift): matcher.identity_of(c, t) for c, t in two.outputs.recorded()}
    assert set(second) == set(first_final)
    keys_in_order = sorted(first_final)
    assert same_partition(
        [second[k] for k in keys_in_order], [first_final[k] for k in keys_in_order]
    )
    ours = set(two.outputs.recorded())
    assert ours and ours.isdisjoint(one.outputs.recorded())
    assert all(track >= SESSION_SPAN for _, track in ours)
    keys = Keys(namespace)
    records = list(one.sink.redis.scan_iter(f"{keys.prefix}:tracklet:*"))
    assert len(records) == len(one.outputs.recorded()) + len(ours)


def test_reusing_an_output_folder_keeps_the_earlier_run(
    scene: Path, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    overrides = [
        f"redis.url={redis_url}",
        f"redis.namespace={namespace}",
        f"outputs.dir={out}",
        "outputs.video=false",
    ]
    Pipeline(load_pipeline_config(scene, overrides)).run()
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    pipeline = Pipeline(load_pipeline_config(scene, overrides))
    assert pipeline.outputs.previous == tmp_path / "run.1"
    pipeline.run()
    kept = tmp_path / "run.1"
    assert {p.relative_to(kept): p.read_bytes() for p in kept.rglob("*") if p.is_file()} == first
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    tracks = [e["track"] for e in events if "track" in e]
    assert tracks and all(t >= SESSION_SPAN for t in tracks)  # this run's events only


@pytest.mark.timeout(180)
def test_stopping_while_redis_is_down_ends_fast_and_keeps_the_outputs(
    scene: Path, tmp_path: Path
) -> None:
    """SIGTERM with Redis gone: the run gives Redis seconds, not minutes, then writes every
    output from what it has (unmatched tracklets stay in tracklets.jsonl)."""
    server = RedisServer(tmp_path / "redis").start()
    out = tmp_path / "run"
    config = load_pipeline_config(
        scene, [f"redis.url={server.url}", f"outputs.dir={out}", "outputs.video=false"]
    )
    pipeline = Pipeline(config)
    stop = threading.Event()

    def outage_then_stop() -> None:
        wait_for_frames(pipeline, 200)
        server.stop()
        stop.set()

    threading.Thread(target=outage_then_stop, daemon=True).start()
    try:
        pipeline.run(stop)
    finally:
        server.stop()
    assert pipeline.stop.is_set() and pipeline.sink.matcher.store.retry.stopping is pipeline.stop
    for name in ("summary.json", "mtmc.txt", "ids.json", "tracklets.jsonl", "identities.json"):
        assert (out / name).is_file(), name
    recorded = {
        (r["camera"], r["track"])
        for r in map(json.loads, (out / "tracklets.jsonl").read_text().splitlines())
    }
    assert set(pipeline.outputs.recorded()) <= recorded


def test_max_frames_below_one_is_refused(scene: Path) -> None:
    """0 used to mean unlimited and -1 one frame."""
    for bad in ("0", "-1"):
        result = CliRunner().invoke(app, ["--cameras", str(scene), "--max-frames", bad])
        assert result.exit_code == 2 and "--max-frames" in result.output


def one_line_error(result) -> str:  # noqa: ANN001 - click's Result
    """The run's error message (rich wraps it; whitespace joined), after checking it ended
    as a user error (exit 2) with no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, OSError)
    return " ".join(result.output[result.output.index("error:") :].split())


def test_a_cams_yaml_that_is_a_folder_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--cameras", str(tmp_path), "--no-live-table"])
    assert (
        one_line_error(result) == f"error: {tmp_path}: cannot read it as cams.yaml: Is a directory"
    )


def test_an_out_that_is_a_file_is_named(
    scene: Path, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    for out in (taken, taken / "run"):
        message = one_line_error(run_pipeline(scene, redis_url, out, namespace))
        assert f"(--out) {out}: {taken} is a file, not a folder" in message
    assert taken.read_text() == "mine"


def test_a_redis_database_the_server_lacks_is_named(
    scene: Path, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    if not redis_url.startswith("redis://"):
        pytest.skip("needs a Redis server URL")
    url = redis_url.rsplit("/", 1)[0] + "/99"  # 16 databases by default
    message = one_line_error(run_pipeline(scene, url, tmp_path / "run", namespace))
    assert f"Redis at {url} refused: DB index is out of range" in message


def test_a_metrics_port_in_use_is_named(
    scene: Path, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_pipeline(scene, redis_url, tmp_path / "run", namespace, f"metrics_port={port}")
    assert f"metrics port 127.0.0.1:{port}: Address already in use" in one_line_error(result)
