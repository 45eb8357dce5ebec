"""Rules of the codebase that a reviewer would otherwise have to remember."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import detectors
from detectors import KINDS, DetectorSettings

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("reid", "pipeline", "detectors", "reid_demo", "settingskit")
MAX_MODULE_LINES = 400


def test_no_module_is_over_400_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }
    assert sizes and not {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES}


def test_every_detector_kind_is_registered() -> None:
    """A kind is one module with a DetectorSettings subclass, plus its line in KINDS."""
    defined = set()
    for module in pkgutil.iter_modules(detectors.__path__):
        loaded = importlib.import_module(f"detectors.{module.name}")
        defined |= {
            cls
            for _, cls in inspect.getmembers(loaded, inspect.isclass)
            if issubclass(cls, DetectorSettings) and cls is not DetectorSettings
        }
    assert defined == set(KINDS)
