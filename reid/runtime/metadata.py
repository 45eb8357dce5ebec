"""The JSON file written beside every exported artifact (``<artifact>.json``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from reid.runtime.base import EmbedderError


class ArtifactMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str  # "onnx", "tensorrt", "openvino" (an IR: .xml + .bin)
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "RGB"
    input_name: str
    output_names: tuple[str, ...]
    feature_dim: int
    basis_rank: int | None
    map_size: tuple[int, int]
    model_sha256: str
    checkpoint: str
    backbone: str
    variant: str
    precision: str = "fp32"
    parity_min_cosine: float | None = None
    tensorrt_version: str | None = None
    cuda_version: str | None = None
    gpu_name: str | None = None
    gpu_compute_capability: str | None = None
    max_batch: int | None = None


ARTIFACT_SUFFIXES = (".consistency.pt", ".onnx", ".engine", ".xml", ".pt")
PRECISION_TAGS = (".int8", ".fp16", ".fp32")


def model_stem(artifact: str | Path) -> Path:
    """``m/casn.v2.int8.onnx`` -> ``m/casn.v2``: the name without its format suffix and
    precision tag. A model's artifacts share it (``.pt``, ``.onnx``, ``.int8.onnx``,
    ``.int8.xml``, ``.fp16.engine``, ``.consistency.pt``); dots elsewhere in the name are
    kept."""
    artifact = Path(artifact)
    name = artifact.name
    for suffix in ARTIFACT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name.removesuffix(suffix)
            break
    for tag in PRECISION_TAGS:
        if name.endswith(tag) and len(name) > len(tag):
            name = name.removesuffix(tag)
            break
    return artifact.with_name(name)


def scorer_path(artifact: str | Path) -> Path:
    """Where the consistency scorer of a model artifact lives (beside it, one per model)."""
    stem = model_stem(artifact)
    return stem.with_name(stem.name + ".consistency.pt")


def metadata_path(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def write_metadata(artifact: str | Path, meta: ArtifactMetadata) -> Path:
    path = metadata_path(artifact)
    path.write_text(meta.model_dump_json(indent=2))
    return path


def read_metadata(artifact: str | Path) -> ArtifactMetadata:
    path = metadata_path(artifact)
    if not path.is_file():
        raise EmbedderError(
            f"{artifact}: its metadata file {path} is missing; re-export with reid-export"
        )
    try:
        return ArtifactMetadata.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise EmbedderError(f"{path}: invalid metadata: {exc}") from exc


def check_outputs(path: str | Path, outputs: list[str], meta: ArtifactMetadata) -> None:
    """A clear error when the graph at ``path`` does not output what its metadata says."""
    if outputs[: len(meta.output_names)] != list(meta.output_names):
        raise EmbedderError(
            f"model {path} outputs {outputs} but its metadata says {list(meta.output_names)}"
        )


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
