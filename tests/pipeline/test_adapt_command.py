"""reid-pipeline adapt honours self-validation: a model that did not win it is not
re-matched with, and the command says so; adaptation starts from the run's own .pt model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import Result
from typer.testing import CliRunner

from pipeline.cli import app
from reid.config import ModelConfig
from reid.models import CASN
from reid.models.checkpoint import model_from_checkpoint
from reid.training.checkpoint import save_untrained
from reid_demo.scene import generate_scene
from tests.reid.sites import small_adapt_config

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_scene(
        tmp_path_factory.mktemp("scene"), people=4, cameras=2, duration=24, seed=5
    )


def adapt(scene: Path, redis_url: str, namespace: str, out: Path, *args: str) -> Result:
    result = CliRunner().invoke(
        app,
        ["adapt", "--cameras", str(scene), "--redis", redis_url, "--out", str(out)]
        + ["--set", f"redis.namespace={namespace}", *args],
    )
    assert result.exit_code == 0, result.output
    return result


def test_a_refused_adaptation_leaves_the_runs_identities(
    scene: Path, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    # no gain can beat a margin of 1: refused whatever the small scene's evidence
    config = small_adapt_config(tmp_path, rounds=1, min_gain=1.0)
    out = tmp_path / "run"
    result = adapt(scene, redis_url, namespace, out, "--adapt-config", str(config))
    flat = " ".join(result.output.split())  # the console wraps long lines
    verdict = json.loads((out / "adapted" / "report.json").read_text())["self_validation"]
    assert not verdict["adopted"]
    assert f"3/3 not re-matched: {verdict['line']}" in flat
    assert "re-matching" not in flat and not (out / "adapted" / "model.onnx").exists()


def test_adaptation_starts_from_the_checkpoint_the_run_used(
    scene: Path, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """The run's reid.model is a ResNet18 checkpoint: adaptation trains that ResNet18 (not
    the adaptation config's MobileNetV2), and its model, adopted unchecked, re-matches."""
    torch.manual_seed(0)
    model_config = ModelConfig(backbone="resnet18", pretrained=None, input_size=(64, 32))
    checkpoint = save_untrained(
        tmp_path / "site.pt", CASN.from_config(model_config, 1), model_config, num_classes=1
    )
    config = small_adapt_config(tmp_path, rounds=1, holdout=0.0)
    out = tmp_path / "run"
    result = adapt(
        scene,
        redis_url,
        namespace,
        out,
        "--adapt-config",
        str(config),
        "--set",
        f"reid.model={checkpoint}",
    )
    adapted, _ = model_from_checkpoint(out / "adapted" / "round0" / "last.pt")
    assert adapted.backbone_name == "resnet18"
    assert "re-matching the stored tracklets" in " ".join(result.output.split())
