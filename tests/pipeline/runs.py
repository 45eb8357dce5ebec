"""``reid-pipeline`` run the way a user runs it, for tests that need a real run."""

from __future__ import annotations

from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from pipeline.cli import app


def run_pipeline(
    cameras: Path, redis_url: str, out: Path, namespace: str, *settings: str
) -> Result:
    """The CLI over ``cameras`` into ``out``, against the Redis at ``redis_url`` in
    ``namespace``; ``settings`` are ``--set key=value`` overrides."""
    args = ["--cameras", str(cameras), "--redis", redis_url, "--out", str(out), "--no-live-table"]
    for setting in (f"redis.namespace={namespace}", *settings):
        args += ["--set", setting]
    return CliRunner().invoke(app, args)
