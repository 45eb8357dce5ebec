"""Training loop behaviour on a tiny synthetic dataset (ResNet18, 64x32 inputs)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from reid.config import validate_settings
from reid.data import generate_synthetic, load_dataset
from reid.evaluation import extract
from reid.models.checkpoint import model_from_checkpoint
from reid.training import (
    CheckpointError,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    load_checkpoint,
)
from reid.training.cli import USER_ERRORS, app
from reid.training.distributed import DistContext, average_gradients, broadcast_state
from tests.reid.test_metrics import reference_rank

TINY = {
    "model": {"backbone": "resnet18", "input_size": [64, 32], "hidden_dim": 32},
    "data": {"dataset": "synthetic", "num_instances": 2, "workers": 0},
    "optim": {"epochs": 2, "batch_size": 8, "lr": 0.01},
    "eval": {"every": 1, "rankings": ["feature", "casn"], "batch_size": 32},
    "device": "cpu",
}


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic(
        tmp_path_factory.mktemp("synthetic"), identities=8, cameras=3, images_per_camera=2, seed=1
    )


def _config(root: Path, output: Path, **optim: int) -> TrainConfig:
    raw = {
        **TINY,
        "data": {**TINY["data"], "root": str(root)},
        "output": str(output),
        "optim": {**TINY["optim"], **optim},
    }
    return validate_settings(raw, TrainConfig, "test")


def test_fit_writes_checkpoints_logs_and_metrics(synthetic_root: Path, tmp_path: Path) -> None:
    config = _config(synthetic_root, tmp_path / "run")
    summary = Trainer(config, load_dataset("synthetic", synthetic_root)).fit()
    history = [
        json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    ]
    assert [h["epoch"] for h in history] == [1, 2]
    for record in history:
        assert all(torch.isfinite(torch.tensor(record[k])) for k in ("total", "ide", "ia", "sa"))
        assert record["ia"] > 0 and record["sa"] > 0
        assert {r["ranking"] for r in record["eval"]} == {"feature", "casn"}
    assert summary.best_checkpoint is not None and summary.best_checkpoint.is_file()
    best_map = max(r["mAP"] for h in history for r in h["eval"] if r["ranking"] == "feature")
    assert summary.best_map == pytest.approx(best_map)
    assert any((tmp_path / "run/tensorboard").iterdir())
    assert load_checkpoint(summary.last_checkpoint)["epoch"] == 2


def test_resume_continues_exactly(synthetic_root: Path, tmp_path: Path) -> None:
    dataset = load_dataset("synthetic", synthetic_root)
    straight = Trainer(_config(synthetic_root, tmp_path / "a"), dataset)
    straight.fit()
    Trainer(_config(synthetic_root, tmp_path / "b", epochs=1), dataset).fit()
    resumed = Trainer(_config(synthetic_root, tmp_path / "b"), dataset)
    resumed.resume(tmp_path / "b/last.pt")
    assert resumed.start_epoch == 1
    resumed.fit()
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


def test_ctrl_c_saves_a_resumable_checkpoint(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = Trainer(
        _config(synthetic_root, tmp_path / "run"), load_dataset("synthetic", synthetic_root)
    )
    calls = {"n": 0}
    real_step = trainer._step

    def step_then_interrupt(images, pids):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_step(images, pids)

    monkeypatch.setattr(trainer, "_step", step_then_interrupt)
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit()
    assert load_checkpoint(info.value.checkpoint)["epoch"] == 0  # epoch 1 restarts
    resumed = Trainer(
        _config(synthetic_root, tmp_path / "run"), load_dataset("synthetic", synthetic_root)
    )
    resumed.resume(info.value.checkpoint)
    assert resumed.start_epoch == 0


def test_corrupt_or_foreign_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt is corrupt"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="lacks model, config, num_classes, epoch"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_cli_trains_and_evaluates(synthetic_root: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump({**TINY, "data": {**TINY["data"], "root": str(synthetic_root)}})
    )
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["--config", str(config), "--set", "optim.epochs=1", "--set", f"output={tmp_path / 'run'}"],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", "--checkpoint", str(tmp_path / "run/last.pt"), "--json"])
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)
    assert [r["ranking"] for r in results] == ["feature", "casn"]
    # the feature ranking's figures, recomputed here from the checkpoint's own features with
    # the metric definitions (tests/reid/test_metrics.py's second implementation)
    model, _ = model_from_checkpoint(tmp_path / "run/last.pt")
    data = load_dataset("synthetic", synthetic_root)
    query, gallery = (
        extract(model, s, torch.device("cpu")).features for s in (data.query, data.gallery)
    )
    labels = [
        [getattr(x, f) for x in split]
        for split in (data.query, data.gallery)
        for f in ("pid", "camid")
    ]
    q_pids, q_cams, g_pids, g_cams = labels
    cmc, mean_ap = reference_rank(
        (1 - query @ gallery.T).numpy(), q_pids, g_pids, q_cams, g_cams, 1
    )
    assert results[0]["mAP"] == pytest.approx(mean_ap, abs=1e-5)
    assert results[0]["rank1"] == pytest.approx(cmc[0], abs=1e-6)
    bad = runner.invoke(app, ["--config", str(config), "--set", "optim.lr=-1"])
    assert bad.exit_code == 2 and "optim.lr" in bad.output
    if not torch.cuda.is_available():  # a setting the machine cannot meet: one line
        gpu = runner.invoke(app, ["--config", str(config), "--set", "device=cuda"])
        assert gpu.exit_code == 2 and "CUDA is not available" in gpu.output
    # anything else is no user error: its traceback shows (a shape bug, CUDA out of memory)
    assert not issubclass(RuntimeError, USER_ERRORS) and not issubclass(ValueError, USER_ERRORS)


@pytest.mark.slow
def test_torchrun_two_cpu_processes(synthetic_root: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    raw = {
        **TINY,
        "data": {**TINY["data"], "root": str(synthetic_root)},
        "optim": {**TINY["optim"], "epochs": 1},
        "output": str(tmp_path / "run"),
    }
    config.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "reid.training.cli",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_checkpoint(tmp_path / "run/last.pt")
    assert state["epoch"] == 1  # rank 0 wrote it after the 2-process epoch
    assert "epoch 1:" in result.stderr


def _average_in_group(rank: int, init_file: str, out: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2
    )
    layer = torch.nn.Linear(3, 2)
    torch.manual_seed(rank)  # different parameters per rank, then rank 0's everywhere
    layer.reset_parameters()
    ctx = DistContext(rank, 2, rank)
    broadcast_state(layer, ctx)
    layer(torch.full((1, 3), float(rank + 1))).sum().backward()
    average_gradients(layer, ctx)
    torch.save({"weight": layer.weight.data, "grad": layer.weight.grad}, f"{out}/{rank}.pt")
    torch.distributed.destroy_process_group()


def test_gradients_are_averaged_across_processes(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(
        _average_in_group, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2
    )
    r0, r1 = (torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in (0, 1))
    torch.testing.assert_close(r0["weight"], r1["weight"])
    # d sum(Wx + b) / dW = x per output row; ranks saw x = 1 and x = 2 -> mean 1.5
    torch.testing.assert_close(r0["grad"], torch.full((2, 3), 1.5))
    torch.testing.assert_close(r1["grad"], r0["grad"])
