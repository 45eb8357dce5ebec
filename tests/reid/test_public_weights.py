"""Public re-id checkpoints (torchreid, fast-reid layouts) load into CASN with their features.

The references are torchvision ResNet50s and deep-person-reid's own OSNet x1.0 code (the
``torchreid`` dev dependency, its model file loaded alone) with random weights and random
BatchNorm statistics, saved the way each project saves them; the feature CASN must reproduce
is the global average of the reference's last feature map.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm
from typer.testing import CliRunner

from reid.export.onnx_export import export_onnx
from reid.models.backbones import PretrainedWeightsError
from reid.models.checkpoint import model_from_checkpoint
from reid.models.public_weights import import_public, read_public_backbone
from reid.training.cli import app


def reference_resnet50(last_stride: int) -> nn.Module:
    net = tvm.resnet50(weights=None)
    if last_stride == 1:  # as both projects do it: the first block of layer4 keeps 1/16
        net.layer4[0].conv2.stride = (1, 1)
        net.layer4[0].downsample[0].stride = (1, 1)
    return randomised_batch_norm(net)


def randomised_batch_norm(net: nn.Module) -> nn.Module:
    """Statistics that are not the identity, so BN loading matters."""
    torch.manual_seed(7)
    for bn in net.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.1, 0.1)
    return net.eval()


def reference_osnet_x1_0() -> nn.Module:
    """deep-person-reid's OSNet, from its model file alone (the package's ``__init__``
    imports its training stack)."""
    package = importlib.util.find_spec("torchreid")
    assert package is not None and package.submodule_search_locations
    path = Path(package.submodule_search_locations[0]) / "reid" / "models" / "osnet.py"
    spec = importlib.util.spec_from_file_location("torchreid_osnet_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return randomised_batch_norm(module.osnet_x1_0(num_classes=751, pretrained=False))


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


def test_torchreid_osnet_x1_0_imports_with_the_reference_features_and_exports(
    tmp_path: Path, images: torch.Tensor
) -> None:
    net = reference_osnet_x1_0()
    path = tmp_path / "osnet_x1_0_market.pth.tar"
    torch.save({"state_dict": net.state_dict(), "epoch": 250}, path)
    out = tmp_path / "casn.pt"
    result = CliRunner().invoke(
        app, ["import", str(path), "--format", "torchreid", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "CASN osnet_x1_0 with the torchreid" in " ".join(result.output.split())  # not ResNet50
    model, state = model_from_checkpoint(out)
    assert state["config"]["model"]["backbone"] == "osnet_x1_0"
    with torch.no_grad():
        got = model.embed(images)
        reference_map = net.featuremaps(images)
    assert got.maps.shape == reference_map.shape == (3, 512, 4, 2)
    torch.testing.assert_close(got.maps, reference_map, atol=1e-5, rtol=1e-4)
    expected = F.normalize(reference_map.mean(dim=(2, 3)), dim=1)
    torch.testing.assert_close(got.features, expected, atol=1e-5, rtol=1e-4)
    exported = export_onnx(out, tmp_path / "model.onnx")  # ready for reid.model
    assert exported.metadata.backbone == "osnet_x1_0"
    assert exported.metadata.parity_min_cosine > 0.999


def test_foreign_and_corrupt_checkpoints_are_refused_clearly(tmp_path: Path) -> None:
    mobilenet = tmp_path / "mobilenet.pth"
    torch.save({"state_dict": tvm.mobilenet_v2(weights=None).state_dict()}, mobilenet)
    with pytest.raises(PretrainedWeightsError, match="not a torchreid ResNet50 or OSNet"):
        read_public_backbone(mobilenet, "torchreid")
    thin = reference_osnet_x1_0().state_dict()
    thin["conv1.conv.weight"] = torch.zeros(48, 3, 7, 7)  # osnet_x0_75's stem
    torch.save({"state_dict": thin}, tmp_path / "osnet_x0_75.pth")
    with pytest.raises(PretrainedWeightsError, match="thinner OSNet .stem width 48"):
        read_public_backbone(tmp_path / "osnet_x0_75.pth", "torchreid")
    torchreid = torchreid_file(reference_resnet50(2), tmp_path / "tr.pth", False)
    with pytest.raises(PretrainedWeightsError, match="not a fastreid ResNet50 or OSNet"):
        read_public_backbone(torchreid, "fastreid")  # no backbone. prefix: wrong format
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="cannot read torchreid checkpoint"):
        read_public_backbone(tmp_path / "junk.pth", "torchreid")
    result = CliRunner().invoke(
        app, ["import", str(mobilenet), "--format", "osnet", "--out", str(tmp_path / "x.pt")]
    )
    assert result.exit_code != 0 and "unknown format 'osnet'" in result.output
