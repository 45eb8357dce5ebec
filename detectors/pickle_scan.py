"""Refuse PyTorch checkpoints whose pickle would import anything but model classes.

Ultralytics loads ``.pt`` detector weights with ``weights_only=False`` (they pickle whole
modules), so a crafted file runs code the moment it is loaded. Before handing a ``.pt`` to
ultralytics, every global its pickle would import is read with :mod:`pickletools` (nothing
is executed) and checked against what YOLO checkpoints need: torch tensors and storages,
``torch.nn`` and ``ultralytics.nn`` classes, plain containers and numpy arrays.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path

ALLOWED_PREFIXES = (
    "torch.nn.modules.",
    "ultralytics.nn.",
    "torch._utils._rebuild_",
)
ALLOWED = {
    "collections.OrderedDict",
    "torch.Size",
    "torch.device",
    "torch.FloatStorage",
    "torch.HalfStorage",
    "torch.DoubleStorage",
    "torch.BFloat16Storage",
    "torch.LongStorage",
    "torch.IntStorage",
    "torch.ShortStorage",
    "torch.CharStorage",
    "torch.ByteStorage",
    "torch.BoolStorage",
    "torch.float16",
    "torch.float32",
    "torch.float64",
    "torch.bfloat16",
    "torch.int64",
    "torch.int32",
    "torch.uint8",
    "torch.bool",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.ndarray",
    "numpy.dtype",
    "_codecs.encode",
    "types.SimpleNamespace",
    "ultralytics.utils.IterableSimpleNamespace",
    "argparse.Namespace",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
    *(
        f"{module}.{name}"
        for module in ("builtins", "__builtin__")
        for name in ("set", "frozenset", "dict", "list", "tuple", "slice", "range", "complex")
    ),
}


class UnsafeWeightsError(ValueError):
    """A checkpoint would import something other than model classes when loaded."""


def pickled_globals(path: str | Path) -> set[str]:
    """``module.name`` of every global the checkpoint's pickles import (nothing runs)."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            blobs = [archive.read(n) for n in archive.namelist() if n.endswith(".pkl")]
    else:  # the legacy format: one pickle stream at the start of the file
        blobs = [path.read_bytes()]
    found: set[str] = set()
    for blob in blobs:
        strings: list[str] = []
        try:
            for op, arg, _ in pickletools.genops(io.BytesIO(blob)):
                if op.name == "GLOBAL":
                    found.add(str(arg).replace(" ", "."))
                elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                    strings.append(str(arg))
                elif op.name == "STACK_GLOBAL":
                    found.add(".".join(strings[-2:]) if len(strings) >= 2 else "<unknown>")
        except Exception as exc:  # a truncated or non-pickle stream
            raise UnsafeWeightsError(
                f"{path} cannot be loaded: not a readable PyTorch checkpoint ({exc})"
            ) from exc
    return found


def check_weights(path: str | Path) -> None:
    """Raise :class:`UnsafeWeightsError` naming what a ``.pt`` file would import beyond
    model classes."""
    unexpected = sorted(
        name
        for name in pickled_globals(path)
        if name not in ALLOWED and not name.startswith(ALLOWED_PREFIXES)
    )
    if unexpected:
        raise UnsafeWeightsError(
            f"{path} was refused: loading it would import {', '.join(unexpected[:5])}, which "
            "no detector checkpoint needs (a crafted file runs code when loaded). Export the "
            "model to ONNX where you trust it and give the .onnx instead"
        )
