"""The shipped YOLO person model as an OpenVINO fp32 export, made once and cached.

On a CPU the shipped ``.pt`` runs in PyTorch eager; the same network compiled by OpenVINO
runs about 4x faster on the project's 2-core Xeon (computing in bf16 there, as OpenVINO
does on CPUs with AMX) and finds 99% of the ``.pt`` boxes (docs/benchmarks.md).
``reid-export detector`` (which ``make install`` runs) writes the export under
``REID_HOME/models``; without it, the first detector built on a CPU writes it (a few
seconds, said in the log). The folder's name carries a digest of the ``.pt``, so new
shipped weights get a new export.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from detectors.base import DetectorError
from detectors.yolo_weights import OPENVINO_FOLDER, check_openvino_folder, pt_model
from settingskit.home import reid_home

log = logging.getLogger(__name__)
NAME = "yolo_person"
INSTALL_HINT = "pip install openvino"


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def models_dir() -> Path:
    """``REID_HOME/models``, where every cached model lives."""
    return reid_home() / "models"


def weights_digest(path: Path) -> str:
    """A short digest of a weights file: its exports' folder names carry it."""
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:12]


def export_path(weights: Path, cache: Path | None = None) -> Path:
    """Where the OpenVINO export of ``weights`` is cached."""
    return (cache or models_dir()) / f"{NAME}_{weights_digest(weights)}{OPENVINO_FOLDER}"


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Ultralytics' export banner and torch's tracing warnings stay out of our logs."""
    ultralytics_log = logging.getLogger("ultralytics")
    level = ultralytics_log.level
    ultralytics_log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        ultralytics_log.setLevel(level)


def export_openvino(weights: Path, out: Path) -> Path:
    """``weights`` (a ``.pt``, restricted-loaded) as an fp32 OpenVINO folder at ``out``,
    with dynamic batch and image size (rectangular letterboxing, as the ``.pt`` runs)."""
    if not openvino_installed():
        raise DetectorError(f"the OpenVINO export needs the openvino package: {INSTALL_HINT}")
    if not out.name.endswith(OPENVINO_FOLDER):
        raise DetectorError(
            f"{out}: an OpenVINO export's folder name must end in {OPENVINO_FOLDER}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as work:
        yolo = pt_model(weights)
        yolo.model.pt_path = str(Path(work) / f"{NAME}.pt")  # ultralytics writes beside it
        try:
            with quiet_export():
                written = Path(yolo.export(format="openvino", dynamic=True, device="cpu"))
        except Exception as exc:  # ultralytics and OpenVINO raise many types
            raise DetectorError(f"the OpenVINO export of {weights} failed: {exc}") from exc
        check_openvino_folder(written)
        if out.exists():
            shutil.rmtree(out)
        os.replace(written, out)  # whole or not at all
    return out


def cached_openvino(weights: Path, cache: Path | None = None) -> Path:
    """The cached OpenVINO export of ``weights``, made now if missing (one process at a time)."""
    out = export_path(weights, cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several workers may start at once
        try:
            check_openvino_folder(out)
            return out
        except DetectorError:
            log.info("exporting the YOLO detector %s to OpenVINO at %s (once)", weights, out)
            return export_openvino(weights, out)
