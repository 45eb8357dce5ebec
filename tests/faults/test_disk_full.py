"""The output disk fills up during a run (a real 2 MB filesystem): one clear error, every
line written is whole, and `reid-pipeline relink --run` still reads the run."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import load_pipeline_config
from pipeline.output_folder import OutputFolderError
from pipeline.run_record import read_summaries, write_mtmc
from pipeline.runner import Pipeline
from reid_demo.scene import generate_scene

pytestmark = pytest.mark.redis


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (needs root and the mount capability; skipped without them)."""
    where = tmp_path / "tiny"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.decode().strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_ends_the_run_with_a_clear_error_and_whole_lines(
    tmp_path: Path, tiny_disk: Path, redis_url: str, namespace: str
) -> None:
    """It used to end in chained ENOSPC tracebacks with no outputs, and a partial last line
    that then crashed `relink --run`."""
    scene = generate_scene(tmp_path / "scene", people=5, cameras=2, duration=30, seed=2)
    out = tiny_disk / "run"
    run = Pipeline(
        load_pipeline_config(
            scene, [f"redis.url={redis_url}", f"redis.namespace={namespace}", f"outputs.dir={out}"]
        )
    )
    with pytest.raises(OutputFolderError, match="is full"):
        run.run()
    records = (out / "tracklets.jsonl").read_text()
    assert records.endswith("\n")  # whole lines only: the record relink reads
    assert len(list(read_summaries(out))) == len(records.splitlines())  # each one readable
    # boxes.txt's cut last line is left out (written off the full disk)
    assert write_mtmc(out, lambda camera, track: "p1", out=tmp_path / "mtmc.txt").read_text()
