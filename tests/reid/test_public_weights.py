"""Public re-id checkpoints (torchreid, fast-reid layouts) load into CASN with their features.

The references are torchvision ResNet50s with random weights and random BatchNorm
statistics, saved the way each project saves them; the feature both projects' backbones
compute at test time is the global average of layer4, which CASN must reproduce.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm
from typer.testing import CliRunner

from reid.models.backbones import PretrainedWeightsError
from reid.models.checkpoint import model_from_checkpoint
from reid.models.public_weights import import_public, read_public_backbone
from reid.training.cli import app


def reference_resnet50(last_stride: int) -> nn.Module:
    net = tvm.resnet50(weights=None)
    if last_stride == 1:  # as both projects do it: the first block of layer4 keeps 1/16
        net.layer4[0].conv2.stride = (1, 1)
        net.layer4[0].downsample[0].stride = (1, 1)
    for bn in net.modules():  # statistics that are not the identity, so BN loading matters
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.data.uniform_(0.5, 1.5)
    return net.eval()


def reference_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    body = nn.Sequential(*list(net.children())[:-2])  # up to layer4
    return F.normalize(body(x).mean(dim=(2, 3)), dim=1)


def torchreid_file(net: nn.Module, path: Path, data_parallel: bool) -> Path:
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    state["classifier.weight"] = torch.randn(751, 2048)
    state["classifier.bias"] = torch.zeros(751)
    if data_parallel:
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save({"state_dict": state, "epoch": 60, "rank1": 0.87, "optimizer": {}}, path)
    return path


def fastreid_file(net: nn.Module, path: Path) -> Path:
    state = {f"backbone.{k}": v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    for name in ("weight", "bias", "running_mean", "running_var"):
        state[f"heads.bottleneck.0.{name}"] = torch.rand(2048)
    state["heads.weight"] = torch.randn(751, 2048)  # fast-reid's classifier
    torch.save({"model": state, "iteration": 12000}, path)
    return path


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(3)
    return torch.randn(3, 3, 64, 32)


@pytest.mark.parametrize("data_parallel", [False, True])
def test_torchreid_resnet50_gives_the_reference_features(
    tmp_path: Path, images: torch.Tensor, data_parallel: bool
) -> None:
    net = reference_resnet50(last_stride=2)
    path = torchreid_file(net, tmp_path / "model.pth.tar", data_parallel)
    model, config = import_public(path, "torchreid")
    assert config.last_stride == 2 and config.input_size == (256, 128)
    with torch.no_grad():
        got = model.embed(images).features
        expected = reference_features(net, images)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_fastreid_bagtricks_r50_through_the_cli_gives_the_reference_features(
    tmp_path: Path, images: torch.Tensor
) -> None:
    net = reference_resnet50(last_stride=1)
    path = fastreid_file(net, tmp_path / "model_final.pth")
    out = tmp_path / "casn.pt"
    result = CliRunner().invoke(
        app, ["import", str(path), "--format", "fastreid", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    model, _ = model_from_checkpoint(out)
    with torch.no_grad():
        got = model.embed(images).features
        expected = reference_features(net, images)
    assert model.input_size == (256, 128)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_foreign_and_corrupt_checkpoints_are_refused_clearly(tmp_path: Path) -> None:
    mobilenet = tmp_path / "mobilenet.pth"
    torch.save({"state_dict": tvm.mobilenet_v2(weights=None).state_dict()}, mobilenet)
    with pytest.raises(PretrainedWeightsError, match="not a torchreid ResNet checkpoint"):
        read_public_backbone(mobilenet, "torchreid")
    torchreid = torchreid_file(reference_resnet50(2), tmp_path / "tr.pth", False)
    with pytest.raises(PretrainedWeightsError, match="not a fastreid ResNet checkpoint"):
        read_public_backbone(torchreid, "fastreid")  # no backbone. prefix: wrong format
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="cannot read torchreid checkpoint"):
        read_public_backbone(tmp_path / "junk.pth", "torchreid")
    result = CliRunner().invoke(
        app, ["import", str(mobilenet), "--format", "osnet", "--out", str(tmp_path / "x.pt")]
    )
    assert result.exit_code != 0 and "unknown format 'osnet'" in result.output
