"""Load an ultralytics detector ``.pt`` through PyTorch's restricted unpickler.

Ultralytics loads ``.pt`` files with ``weights_only=False``: a crafted file runs code the
moment it is opened. Here the file is read with ``torch.load(weights_only=True)``, which
resolves a global only by its exact name from an allow-list and runs nothing else. The
allow-list is made per file from the globals it names, each admitted only if it is, by its
own ``__module__`` and ``__qualname__``, an ``nn.Module`` class of ``torch.nn`` or of
ultralytics' model modules (or one of a few plain data classes).

The restricted unpickler still *calls* an allowed class when a pickle asks for it (REDUCE),
and ultralytics' model constructors ``eval`` strings from their arguments. So each model
class is admitted as a stand-in that can only be re-created from saved state (what
``torch.save`` of a module writes: NEWOBJ + BUILD, no constructor) and refuses to be called;
after the load every object is given its real class back.

Anything else (a legacy non-zip file, a TorchScript archive, a global outside the list) is
refused with an error that names it and says to export ONNX.
"""

from __future__ import annotations

import importlib
import pathlib
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from detectors.base import DetectorError

MODEL_MODULES = ("torch.nn.modules.", "ultralytics.nn.modules.")
MODEL_CLASSES = {"ultralytics.nn.tasks.DetectionModel"}
EXPORT_HINT = (
    "Export the model to ONNX where you trust it (yolo export model=FILE format=onnx) and "
    "give the .onnx instead"
)


class _Refused(pickle.UnpicklingError):
    """A checkpoint asked to call a model class's constructor."""


def _data_globals() -> dict[str, Any]:
    """Plain data a detector checkpoint may hold beside its modules (safe to call)."""
    import numpy as np
    from ultralytics.utils import IterableSimpleNamespace

    scalar = np.float64(0).__reduce__()[0]
    return {
        "ultralytics.utils.IterableSimpleNamespace": IterableSimpleNamespace,
        "numpy.dtype": np.dtype,
        "numpy.core.multiarray.scalar": scalar,
        "numpy._core.multiarray.scalar": scalar,
        "pathlib.PosixPath": pathlib.PurePosixPath,
        "pathlib.WindowsPath": pathlib.PureWindowsPath,
    }


def _model_class(name: str) -> type | None:
    """The ``nn.Module`` class ``name`` spells exactly, if it is one we admit."""
    import torch

    if not (name.startswith(MODEL_MODULES) or name in MODEL_CLASSES):
        return None
    module_name, _, attr = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr, None)
    except ImportError:
        return None
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
        return None
    return obj if f"{obj.__module__}.{obj.__qualname__}" == name else None


def _stand_in(cls: type) -> type:
    """A subclass of ``cls`` that unpickling can re-create from state but never call."""

    def refuse(self: object, *args: object, **kwargs: object) -> None:
        raise _Refused(f"the checkpoint calls the constructor of {cls.__qualname__}")

    return type(cls.__name__, (cls,), {"__init__": refuse, "__module__": cls.__module__})


def _modules_in(obj: Any, depth: int = 0) -> Iterator[Any]:
    """Every ``nn.Module`` reachable from the loaded checkpoint's containers."""
    import torch

    if depth > 8:
        return
    if isinstance(obj, torch.nn.Module):
        yield from obj.modules()
        for value in vars(obj).values():
            if not isinstance(value, (torch.nn.Module, torch.Tensor)):
                yield from _modules_in(value, depth + 1)
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _modules_in(value, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _modules_in(value, depth + 1)


def _reason(exc: BaseException) -> str:
    """The restricted unpickler's own complaint, without torch's advice to load unrestricted."""
    text = str(exc)
    _, marker, rest = text.partition("WeightsUnpickler error:")
    return " ".join((rest if marker else text).strip().split("\n\n")[0].split())


def load_detector_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict of an ultralytics ``.pt`` file, loaded without running its code.

    Raises:
        DetectorError: naming what the file holds that a detector checkpoint does not.
    """
    import torch

    if not zipfile.is_zipfile(path):
        raise DetectorError(
            f"{path} was refused: it is not a PyTorch zip checkpoint (a legacy-format or "
            f"damaged file cannot be loaded without running its code). {EXPORT_HINT}"
        )
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # a damaged archive, or opcodes the restricted reader refuses
        raise DetectorError(
            f"{path} was refused: PyTorch's restricted loader cannot read it ({exc}). {EXPORT_HINT}"
        ) from exc
    data = _data_globals()
    stand_ins: dict[type, type] = {}
    allowed: list[Any] = []
    unexpected = []
    for name in needed:
        cls = _model_class(name)
        if cls is not None:
            stand_in = _stand_in(cls)
            stand_ins[stand_in] = cls
            allowed.append((stand_in, name))
        elif name in data:
            allowed.append((data[name], name))
        else:
            unexpected.append(name)
    if unexpected:
        raise DetectorError(
            f"{path} was refused: loading it would import {', '.join(sorted(unexpected)[:5])}, "
            f"which no detector checkpoint needs (a crafted file runs code when loaded). "
            f"{EXPORT_HINT}"
        )
    try:
        with torch.serialization.safe_globals(allowed):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise DetectorError(f"{path} was refused: {_reason(exc)}. {EXPORT_HINT}") from exc
    if not isinstance(ckpt, dict):
        raise DetectorError(f"{path} is not an ultralytics checkpoint (it holds {type(ckpt)})")
    for module in _modules_in(ckpt):
        real = stand_ins.get(type(module))
        if real is not None:
            module.__class__ = real
    return ckpt
