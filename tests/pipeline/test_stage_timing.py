"""Stage timing in one place (``with state.stage(name):``) and which stages overlapped."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from pipeline.run_state import STAGES, RunState
from reid_demo.scene import generate_scene
from tests.pipeline.runs import run_pipeline


def test_stages_in_other_threads_are_reported_as_overlapping() -> None:
    state = RunState({})
    inside, release = threading.Event(), threading.Event()

    def detect() -> None:
        with state.stage("detect"):
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=detect, name="detect_0")
    worker.start()
    assert inside.wait(10)
    with state.stage("track"):  # wholly while detect runs
        pass
    with state.stage("output"):
        pass
    release.set()
    worker.join()
    with state.stage("embed"):  # after detect ended
        pass
    with state.stage("track"):
        pass
    summary = state.summary()
    assert set(summary["stage_overlap_s"]) == {"detect+track", "detect+output"}
    # output ran wholly while detect ran: all of its time overlapped
    assert summary["stage_overlap_s"]["detect+output"] == summary["stage_s"]["output"]
    assert summary["stage_threads"] == {
        "detect": ["detect_0"],
        "track": ["MainThread"],
        "output": ["MainThread"],
        "embed": ["MainThread"],
    }
    assert summary["stage_calls"]["track"] == 2 and summary["stage_calls"]["read"] == 0
    assert list(summary["stage_s"]) == list(STAGES)  # the field as it always was


def test_a_failing_stage_is_still_timed() -> None:
    state = RunState({})
    with pytest.raises(RuntimeError), state.stage("embed"):
        raise RuntimeError("model gone")
    assert state.stage_calls["embed"] == 1
    with pytest.raises(KeyError):  # a misspelt stage is a bug, not a new stage
        with state.stage("embedd"):
            pass


@pytest.mark.redis
def test_a_run_says_detection_ran_ahead_in_its_thread(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    scene = generate_scene(tmp_path / "scene", people=2, cameras=2, duration=6, seed=3)
    out = tmp_path / "run"
    result = run_pipeline(scene, redis_url, out, namespace, "outputs.video=false")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    threads = summary["stage_threads"]
    assert threads["read"] == threads["track"] == ["MainThread"]
    assert threads["detect"] and "MainThread" not in threads["detect"]
    assert summary["stage_calls"]["detect"] >= 1 and summary["stage_s"]["detect"] >= 0
    assert all("+" in pair and seconds >= 0 for pair, seconds in summary["stage_overlap_s"].items())
