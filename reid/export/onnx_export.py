"""Checkpoint -> ONNX with L2-normalised features and projected conv maps as outputs."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reid.export.samples import cosine_rows, load_crops
from reid.models import CASN
from reid.models.checkpoint import model_from_checkpoint
from reid.preprocess import IMAGENET_MEAN, IMAGENET_STD, crops_to_tensor
from reid.runtime.base import FEATURES, INPUT, PROJECTIONS
from reid.runtime.consistency import ConsistencyScorer, fit_channel_basis
from reid.runtime.metadata import ArtifactMetadata, scorer_path, sha256_of, write_metadata

log = logging.getLogger(__name__)
OPSET = 17  # TensorRT 10 and 11 parse it fully; ONNX Runtime >= 1.14
MIN_COSINE = 0.999


class ExportError(RuntimeError):
    """An export failed its parity check or could not be written."""


class ExportGraph(nn.Module):
    """images -> (features [N, D] L2-normalised, projections [N, r, h, w])."""

    def __init__(self, model: CASN, basis: torch.Tensor) -> None:
        super().__init__()
        self.backbone, self.pool = model.backbone, model.pool
        # the projection U^T A is a 1x1 convolution with U^T as its weight
        self.project = nn.Conv2d(basis.shape[0], basis.shape[1], 1, bias=False)
        self.project.weight.data.copy_(basis.T[:, :, None, None])

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.backbone(images)
        return F.normalize(self.pool(maps), dim=1), self.project(maps)


@dataclass(frozen=True)
class OnnxExport:
    onnx: Path
    scorer: Path
    metadata: ArtifactMetadata


def export_onnx(
    checkpoint: str | Path,
    output: str | Path,
    samples: str | Path | None = None,
    basis_rank: int = 32,
) -> OnnxExport:
    """Export ``checkpoint`` to ``output`` (.onnx) after checking ONNX Runtime parity.

    Writes ``output``, ``output.json`` (metadata) and ``<stem>.consistency.pt`` (channel
    basis + heads for the matcher). Nothing is written if parity fails.
    """
    import onnxruntime as ort

    output = Path(output)
    if output.suffix != ".onnx":
        raise ExportError(f"{output}: the ONNX output must end in .onnx")
    model, state = model_from_checkpoint(checkpoint)
    crops = load_crops(samples)
    images = crops_to_tensor(crops, model.input_size)
    with torch.no_grad():
        reference = model.embed(images)
    basis = fit_channel_basis(reference.maps, basis_rank)
    graph = ExportGraph(model, basis).eval()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    torch.onnx.export(
        graph,
        (images[:2],),
        str(tmp),
        input_names=[INPUT],
        output_names=[FEATURES, PROJECTIONS],
        dynamic_axes={INPUT: {0: "batch"}, FEATURES: {0: "batch"}, PROJECTIONS: {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    features, projections = session.run(None, {INPUT: images.numpy()})
    cosine = float(cosine_rows(features, reference.features.numpy()).min())
    with torch.no_grad():
        expected_proj = graph.project(reference.maps).numpy()
    proj_err = float(
        np.abs(projections - expected_proj).max() / max(np.abs(expected_proj).max(), 1e-12)
    )
    log.info(
        "ONNX parity on %d crops: min feature cosine %.6f, projection rel. error %.2e",
        len(crops),
        cosine,
        proj_err,
    )
    if cosine < MIN_COSINE or proj_err > 1e-3:
        tmp.unlink()
        raise ExportError(
            f"ONNX export of {checkpoint} failed parity: min feature cosine {cosine:.6f} "
            f"(needs >= {MIN_COSINE}), projection error {proj_err:.2e}; nothing written"
        )
    os.replace(tmp, output)
    scorer = scorer_path(output)
    ConsistencyScorer.from_model(model, basis).save(scorer)
    config = state["config"]["model"]
    meta = ArtifactMetadata(
        format="onnx",
        input_size=model.input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_name=INPUT,
        output_names=(FEATURES, PROJECTIONS),
        feature_dim=model.feature_dim,
        basis_rank=basis.shape[1],
        map_size=tuple(reference.maps.shape[-2:]),
        model_sha256=sha256_of(checkpoint),
        checkpoint=str(checkpoint),
        backbone=config["backbone"],
        variant=config["variant"],
        parity_min_cosine=cosine,
    )
    write_metadata(output, meta)
    return OnnxExport(output, scorer, meta)
