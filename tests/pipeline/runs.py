"""``reid-pipeline`` run the way a user runs it, for tests that need a real run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.matcher import Store
from reid_demo.scene import generate_scene


def run_pipeline(
    cameras: Path, redis_url: str, out: Path, namespace: str, *settings: str
) -> Result:
    """The CLI over ``cameras`` into ``out``, against the Redis at ``redis_url`` in
    ``namespace``; ``settings`` are ``--set key=value`` overrides."""
    args = ["--cameras", str(cameras), "--redis", redis_url, "--out", str(out), "--no-live-table"]
    for setting in (f"redis.namespace={namespace}", *settings):
        args += ["--set", setting]
    return CliRunner().invoke(app, args)


def review_scene_run(
    factory: pytest.TempPathFactory, redis_url: str, folder: str, *settings: str
) -> Iterator[tuple[Path, str]]:
    """A real run over a synthetic two-camera scene (4 people, 16 s) into
    ``<tmp>/<folder>``, in a namespace of its own: (its folder, the namespace); the
    namespace is cleared afterwards. For module fixtures of the review tests."""
    scene = generate_scene(factory.mktemp("scene"), people=4, cameras=2, duration=16, seed=5)
    out = factory.mktemp("runs") / folder
    namespace = f"test-review-{folder}-{out.parent.name}"
    result = run_pipeline(scene, redis_url, out, namespace, *settings)
    assert result.exit_code == 0, result.output
    yield out, namespace
    Store.open(redis_url, namespace).clear()
