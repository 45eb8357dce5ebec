"""One home for run state, so every command finds the same state from any folder.

``REID_HOME`` if set, else the per-user data folder (``$XDG_DATA_HOME/reid-pipeline``,
by default ``~/.local/share/reid-pipeline``). It holds the embedded Redis (``redis/``) and
cached models (``models/``: the fallback embedder, the detector's OpenVINO export).
"""

from __future__ import annotations

import os
from pathlib import Path


def reid_home() -> Path:
    if os.environ.get("REID_HOME"):
        return Path(os.environ["REID_HOME"]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "reid-pipeline"
