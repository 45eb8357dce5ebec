from pathlib import Path

import pytest
import torch
from torchvision import models as tvm

from reid.models import PretrainedWeightsError, build_backbone
from reid.models.backbones import _shipped_mobilenet_weights


def test_shipped_mobilenet_weights_load_positionally() -> None:
    source = torch.load(_shipped_mobilenet_weights(), map_location="cpu", weights_only=True)
    body = build_backbone("mobilenet_v2", pretrained="imagenet").body
    loaded = list(body.state_dict().values())
    assert len(source) == len(loaded) == 312
    for expected, got in zip(source.values(), loaded, strict=True):
        assert torch.equal(expected, got)


def test_torchvision_state_dict_loads(tmp_path: Path) -> None:
    reference = tvm.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    body = build_backbone("resnet18", pretrained=path).body
    assert torch.equal(body[0].weight, reference.conv1.weight)
    assert torch.equal(body[7][1].bn2.running_var, reference.layer4[1].bn2.running_var)


def test_missing_weights_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(PretrainedWeightsError, match="nope.pth"):
        build_backbone("resnet50", pretrained=missing)


def test_resnet50_imagenet_explains_where_weights_go() -> None:
    with pytest.raises(PretrainedWeightsError, match="pass its path"):
        build_backbone("resnet50", pretrained="imagenet")


def test_corrupt_weights_are_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(PretrainedWeightsError, match="cannot read"):
        build_backbone("resnet18", pretrained=path)


class _Payload:
    pass


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickle.pth"
    torch.save({"obj": _Payload()}, path)
    with pytest.raises(PretrainedWeightsError, match="cannot read"):
        build_backbone("resnet18", pretrained=path)


def test_wrong_architecture_weights_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet50.pth"
    torch.save(tvm.resnet50(weights=None).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="resnet18"):
        build_backbone("resnet18", pretrained=path)


def test_mobilenet_rejects_last_stride_one() -> None:
    with pytest.raises(ValueError, match="ResNet"):
        build_backbone("mobilenet_v2", last_stride=1)
