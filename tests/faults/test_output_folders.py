"""Output folders: a run's own for its life, never the footage's."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_pipeline_config
from pipeline.output_folder import OutputFolderError
from pipeline.runner import Pipeline
from reid_demo.scene import generate_scene

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_scene(tmp_path_factory.mktemp("scene"), people=2, cameras=2, duration=6, seed=3)


def pipeline_for(scene: Path, redis_url: str, namespace: str, out: Path) -> Pipeline:
    return Pipeline(
        load_pipeline_config(
            scene,
            [
                f"redis.url={redis_url}",
                f"redis.namespace={namespace}",
                f"outputs.dir={out}",
                "outputs.video=false",
            ],
        )
    )


def test_a_second_run_into_a_folder_another_run_writes_is_refused(
    scene: Path, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """Two runs into one --out at once used to corrupt each other (and the second moved the
    first's folder aside under it)."""
    out = tmp_path / "run"
    first = pipeline_for(scene, redis_url, namespace, out)
    with pytest.raises(OutputFolderError, match=r"being written by another run \(pid \d+\)"):
        pipeline_for(scene, redis_url, namespace, out)
    first.run()
    assert (out / "summary.json").is_file() and not out.with_name("run.1").exists()
    pipeline_for(scene, redis_url, namespace, out).run()  # once it ended: moved aside, as ever
    assert (out.with_name("run.1") / "summary.json").is_file()


def test_the_footage_folder_is_never_an_output_folder(
    scene: Path, redis_url: str, namespace: str
) -> None:
    """--out at the footage folder used to move the videos aside with an earlier run."""
    before = sorted(p.name for p in scene.parent.iterdir())
    with pytest.raises(OutputFolderError, match="holds camera footage"):
        pipeline_for(scene, redis_url, namespace, scene.parent)
    assert sorted(p.name for p in scene.parent.iterdir()) == before
