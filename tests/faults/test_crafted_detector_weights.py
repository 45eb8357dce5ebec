"""Crafted detector ``.pt`` files: each one provably runs its payload when unpickled the way
ultralytics (or a naive allow-list) would, and none runs it through ``build_detector``."""

from __future__ import annotations

import contextlib
import importlib
import io
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from detectors import DetectorError, build_detector, default_weights


def _u(text: str) -> bytes:
    """SHORT_BINUNICODE: a protocol-4 string."""
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def _s(text: str) -> bytes:
    """SHORT_BINSTRING: a protocol-1 byte string (read back as str)."""
    data = text.encode()
    return b"U" + bytes([len(data)]) + data


def _call(callee: bytes, command: str) -> bytes:
    """PROTO 4, ``callee``, then REDUCE it with ``(command,)``."""
    return b"\x80\x04" + callee + _u(command) + b"\x85R."


def _dotted_under_allowed_prefix(command: str) -> bytes:
    # protocol 4 resolves dotted names: ultralytics.nn.modules.block -> torch -> os -> system
    return _call(_u("ultralytics.nn.modules.block") + _u("torch.os.system") + b"\x93", command)


def _names_from_the_memo(command: str) -> bytes:
    # the real names are memoised first, then decoys pushed, then the memo read back
    return _call(
        _u("os")
        + b"\x94"  # MEMOIZE 0
        + _u("system")
        + b"\x94"  # MEMOIZE 1
        + b"0"  # POP
        + b"0"
        + _u("torch.nn.modules.conv")
        + _u("Conv2d")
        + b"00"
        + b"h\x00h\x01\x93",  # BINGET 0, BINGET 1, STACK_GLOBAL
        command,
    )


def _names_as_short_binstring(command: str) -> bytes:
    return _call(_s("os") + _s("system") + b"\x93", command)


def _plain_global(command: str) -> bytes:
    return _call(b"cos\nsystem\n", command)


class _ModelCall:
    """Pickles to a call of DetectionModel with a model dict whose activation ultralytics
    evaluates (torch.save of a module never writes a constructor call)."""

    def __init__(self, command: str) -> None:
        self.cfg = {
            "activation": f"__import__('os').system({command!r})",
            "nc": 1,
            "backbone": [[-1, 1, "Conv", [16, 3, 2]]],
            "head": [],
        }

    def __reduce__(self):  # noqa: ANN204
        from ultralytics.nn.tasks import DetectionModel

        return DetectionModel, (self.cfg,)


def _constructor_with_crafted_arguments(command: str) -> bytes:
    return pickle.dumps({"model": _ModelCall(command)}, protocol=2)


def _zip_checkpoint(path: Path, pickle_bytes: bytes) -> None:
    """A PyTorch zip checkpoint whose data.pkl is ``pickle_bytes``."""
    torch.save({"model": None}, path)
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            archive.writestr(name, pickle_bytes if name.endswith("/data.pkl") else data)


CRAFTED: dict[str, Callable[[str], bytes]] = {
    "plain_global": _plain_global,
    "dotted_name_under_allowed_prefix": _dotted_under_allowed_prefix,
    "names_from_the_memo": _names_from_the_memo,
    "names_as_short_binstring": _names_as_short_binstring,
    "constructor_with_crafted_arguments": _constructor_with_crafted_arguments,
}


def _open_unguarded(path: Path, kind: str) -> None:
    """Open ``path`` as an unguarded loader would: ultralytics' full unpickle or, for the
    constructor call, a weights-only load that merely allow-lists the model class."""
    from ultralytics.nn.tasks import DetectionModel

    with contextlib.suppress(Exception):
        if kind == "constructor_with_crafted_arguments":
            with torch.serialization.safe_globals([DetectionModel]):
                torch.load(path, map_location="cpu", weights_only=True)
        else:
            torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
@pytest.mark.parametrize("kind", sorted(CRAFTED))
def test_crafted_zip_checkpoint_never_runs_its_payload(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    crafted = tmp_path / "yolo_person.pt"
    _zip_checkpoint(crafted, CRAFTED[kind](f"touch {marker}"))
    with pytest.raises(DetectorError, match=r"refused.*ONNX"):
        build_detector("yolo", weights=str(crafted))
    assert not marker.exists()
    _open_unguarded(crafted, kind)  # control: the same file does run code when opened unguarded
    assert marker.exists()


class _Payload:
    """Pickles to a call of os.system."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):  # noqa: ANN204
        import os

        return os.system, (self.command,)


def test_legacy_checkpoint_with_the_payload_in_a_later_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    crafted = tmp_path / "yolo_person.pt"
    # the legacy format is several pickles in a row: magic number, version, sys info, object
    payload = {"model": _Payload(f"touch {marker}")}
    torch.save(payload, crafted, _use_new_zipfile_serialization=False)
    with pytest.raises(DetectorError, match=r"not a PyTorch zip checkpoint.*ONNX"):
        build_detector("yolo", weights=str(crafted))
    assert not marker.exists()
    with crafted.open("rb") as stream:  # control: the fourth pickle is the payload
        for _ in range(3):
            pickle.load(stream)
        pickle.load(stream)
    assert marker.exists()


def test_a_checkpoint_naming_an_unknown_global_names_it(tmp_path: Path) -> None:
    crafted = tmp_path / "yolo_person.pt"
    _zip_checkpoint(crafted, b"\x80\x02csubprocess\nPopen\n)\x81.")
    with pytest.raises(DetectorError, match=r"would import subprocess\.Popen.*export"):
        build_detector("yolo", weights=str(crafted))


def test_shipped_checkpoint_loads_restricted_and_detects_as_ultralytics_does() -> None:
    import numpy as np
    from ultralytics import YOLO

    frame = np.zeros((240, 320, 3), np.uint8)
    frame[40:200, 140:180] = 200  # something to score
    ours = build_detector("yolo", weights=str(default_weights()), conf=0.01)
    assert type(ours.model.model).__name__ == "DetectionModel"
    for module in ours.model.model.modules():  # each has its real class back, no stand-in
        cls = type(module)
        assert getattr(importlib.import_module(cls.__module__), cls.__qualname__) is cls
    # the shipped file is trusted: ultralytics' own loader gives the reference boxes
    reference = YOLO(str(default_weights()), task="detect").predict(
        [frame], **ours._options(ours.classes)
    )[0]
    found = ours.detect([frame])[0]
    assert np.array_equal(found.xyxy, reference.boxes.xyxy.cpu().numpy())
    assert np.array_equal(found.scores, reference.boxes.conf.cpu().numpy())


def test_pickle_opcodes_in_the_crafted_files_are_what_they_claim() -> None:
    """The hand-assembled pickles parse as pickles (a typo would make the tests vacuous)."""
    import pickletools

    for kind, make in CRAFTED.items():
        ops = [op.name for op, _, _ in pickletools.genops(io.BytesIO(make("true")))]
        assert "REDUCE" in ops, kind
        assert ops[-1] == "STOP", kind
