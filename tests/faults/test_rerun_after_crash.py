"""A run killed with SIGKILL half-way, then run again over the same footage in the same
namespace: the rerun ends with the identities a clean run ends with, and the crashed run's
records are left as they were."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from pipeline.matcher.keys import Keys
from pipeline.runner import SESSION_SPAN
from reid_demo.scene import generate_scene
from tests.pipeline.runs import run_pipeline
from tests.pipeline.scenes import same_partition

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def final_identities(out: Path) -> dict[tuple[str, int], str]:
    rows = json.loads((out / "identities.json").read_text())
    return {(r["camera"], r["track"] % SESSION_SPAN): r["identity"] for r in rows}


def crashed_records(client: redis.Redis, namespace: str) -> dict[bytes, bytes | None]:
    keys = Keys(namespace)
    return {k: client.hget(k, "identity") for k in client.scan_iter(f"{keys.prefix}:tracklet:*")}


@pytest.mark.timeout(600)
def test_a_rerun_after_kill_9_ends_as_a_clean_run(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    cams = generate_scene(tmp_path / "scene", people=5, cameras=2, duration=30, seed=2)
    clean = run_pipeline(cams, redis_url, tmp_path / "clean", f"{namespace}-clean")
    assert clean.exit_code == 0, clean.output
    expected = final_identities(tmp_path / "clean")
    assert len(set(expected.values())) < len(expected)  # some tracks linked: not trivial
    crashed = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "--cameras",
            str(cams),
            "--redis",
            redis_url,
            "--out",
            str(tmp_path / "crashed"),
            "--no-live-table",
            "--set",
            f"redis.namespace={namespace}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    record = tmp_path / "crashed" / "tracklets.jsonl"
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 300
    # killed mid-run: some tracklets recorded in the run folder and decided in Redis (a line
    # is written before its decision commits, so the folder alone may be ahead of Redis)
    while time.monotonic() < deadline and (
        not record.is_file()
        or len(record.read_text().splitlines()) < 6
        or not crashed_records(client, namespace)
    ):
        time.sleep(0.05)
    crashed.send_signal(signal.SIGKILL)
    crashed.wait(30)
    left = crashed_records(client, namespace)
    assert left and not (tmp_path / "crashed" / "identities.json").exists()  # it did crash
    rerun = run_pipeline(cams, redis_url, tmp_path / "rerun", namespace)
    assert rerun.exit_code == 0, rerun.output
    found = final_identities(tmp_path / "rerun")
    assert set(found) == set(expected)
    order = sorted(expected)
    assert same_partition([found[k] for k in order], [expected[k] for k in order])
    assert {k: v for k, v in crashed_records(client, namespace).items() if k in left} == left
    for ns in (f"{namespace}-clean",):
        stale = list(client.scan_iter(f"{Keys(ns).prefix}:*"))
        if stale:
            client.delete(*stale)
