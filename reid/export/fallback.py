"""The offline fallback model as an ONNX artifact (``reid-export fallback``), built once.

With no trained model configured, the pipeline embeds with ImageNet MobileNetV2 features
(:mod:`reid.runtime.fallback`). Exported to ONNX they run on ONNX Runtime, about twice as
fast as torch eager on CPU.
"""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path

from reid.export.onnx_export import export_onnx
from reid.models import CASN
from reid.runtime.fallback import FALLBACK, NAME, fallback_onnx
from reid.runtime.metadata import metadata_path
from reid.training.checkpoint import save_untrained

log = logging.getLogger(__name__)


def export_fallback(home: str | Path | None = None) -> Path:
    """``<home>/models/imagenet_mobilenet_v2.onnx`` (parity-checked); kept if present."""
    onnx = fallback_onnx(home)
    cache = onnx.parent
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several workers may start at once
        if onnx.is_file() and metadata_path(onnx).is_file():
            return onnx
        log.info("exporting the ImageNet fallback embedder to %s (once)", onnx)
        model = CASN.from_config(FALLBACK, num_classes=1)
        checkpoint = save_untrained(cache / f"{NAME}.pt", model, FALLBACK, num_classes=1)
        return export_onnx(checkpoint, onnx, basis_rank=8).onnx
