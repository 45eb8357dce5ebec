"""Public re-id checkpoints (deep-person-reid / torchreid, fast-reid) as CASN backbones.

Both projects train torchvision-layout ResNet50s, and torchreid OSNet x1.0, on Market-1501,
MSMT17 and the like; a user who downloads such a checkpoint elsewhere gets a real re-id
model here in one command (``reid-train import``). The architecture is read from the keys.
Only the backbone is taken: their heads are replaced by CASN's, whose feature is the global
average of the last feature map. That is what torchreid's ``resnet50`` returns at test time;
fast-reid's BoT adds a BN neck and torchreid's OSNet a Linear-BN-ReLU embedding on top of
it, which cannot be folded into CASN's linear feature without breaking closed-form attention.
"""

from __future__ import annotations

from pathlib import Path

import torch

from reid.config import ModelConfig
from reid.models.backbones import PretrainedWeightsError, load_torchvision_tensors
from reid.models.casn import CASN

# each format: where its state dict sits in the file, the backbone's key prefix and the
# last stride its ResNet50 is trained with
FORMATS: dict[str, tuple[tuple[str, ...], str, int]] = {
    "torchreid": (("state_dict",), "", 2),  # torchreid.utils.save_checkpoint
    "fastreid": (("model",), "backbone.", 1),  # fastreid Checkpointer, BoT (bagtricks_R50)
}
HEAD_PREFIXES = ("classifier.", "fc.", "heads.")
# a key only each architecture has -> our backbone name
SIGNATURES = {"layer4.0.conv1.weight": "resnet50", "conv5.conv.weight": "osnet_x1_0"}
OSNET_STEM_WIDTH = 64  # x1.0; the thinner OSNets (x0.75 ...) start narrower


def read_public_backbone(path: str | Path, fmt: str) -> tuple[str, dict[str, torch.Tensor]]:
    """The architecture (a backbone name) and backbone tensors of a ``fmt`` checkpoint, in
    the public project's names."""
    if fmt not in FORMATS:
        raise PretrainedWeightsError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"{fmt} checkpoint {path} does not exist")
    try:  # never unpickle code: tensors, numbers and containers only
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or pickled files
        raise PretrainedWeightsError(f"cannot read {fmt} checkpoint {path}: {exc}") from exc
    containers, prefix, _ = FORMATS[fmt]
    state = raw
    for key in containers:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise PretrainedWeightsError(f"{path} holds no state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel saves
    tensors = {
        k.removeprefix(prefix): v
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and k.startswith(prefix) and not k.startswith(HEAD_PREFIXES)
    }
    found = [name for key, name in SIGNATURES.items() if key in tensors]
    if len(found) != 1:
        sample = ", ".join(list(state)[:4])
        raise PretrainedWeightsError(
            f"{path} is not a {fmt} ResNet50 or OSNet x1.0 checkpoint: no {prefix}layer4 or "
            f"{prefix}conv5 tensors (its keys start {sample})"
        )
    if found[0] == "osnet_x1_0" and tensors["conv1.conv.weight"].shape[0] != OSNET_STEM_WIDTH:
        width = tensors["conv1.conv.weight"].shape[0]
        raise PretrainedWeightsError(
            f"{path} is a thinner OSNet (stem width {width}, x1.0 has {OSNET_STEM_WIDTH}); "
            "only osnet_x1_0 is supported"
        )
    return found[0], tensors


def import_public(
    path: str | Path, fmt: str, input_size: tuple[int, int] = (256, 128)
) -> tuple[CASN, ModelConfig]:
    """A CASN IDE model whose backbone is the checkpoint's; ``input_size`` is what the
    public model was trained at (both projects default to 256x128)."""
    backbone, tensors = read_public_backbone(path, fmt)
    last_stride = FORMATS[fmt][2] if backbone == "resnet50" else 2
    config = ModelConfig(
        backbone=backbone, variant="ide", last_stride=last_stride, input_size=input_size
    )
    model = CASN.from_config(config, num_classes=1)
    load_torchvision_tensors(model.backbone, backbone, tensors, f"{fmt} checkpoint {path}")
    return model.eval(), config
