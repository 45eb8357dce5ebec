"""Which runtime embeds an ``.onnx`` on this CPU under ``auto``: OpenVINO (fp32) when it ran
the model at least as fast as ONNX Runtime, measured once per model and machine.

Neither wins everywhere. On the project's 2-core Xeon, in fp32 the two were within 10% of
each other, either way depending on the model and the machine's load; OpenVINO ran ONNX
Runtime's INT8 ResNet50 2.1-2.7x faster than ONNX Runtime did (docs/benchmarks.md). So both
are compiled and timed side by side (three interleaved rounds on a batch of 8, at least
0.25 s each: 2-3 s once), the faster is kept, and the verdict is written to
``REID_HOME/models/onnx_runtimes.json``, keyed by the model's digest, the CPU and the two
runtimes' versions: later starts read it and measure nothing. Delete the file to measure
again; ``reid.backend: ort`` or ``openvino`` skips the choice.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from reid.runtime.base import Embedder, EmbedderError
from reid.runtime.home import reid_home
from reid.runtime.metadata import sha256_of
from reid.runtime.onnx_backend import OrtEmbedder
from reid.runtime.openvino_backend import (
    INSTALL_HINT,
    OpenVinoEmbedder,
    import_openvino,
    openvino_installed,
)

log = logging.getLogger(__name__)
ROUNDS, BATCH, SAMPLE_S = 3, 8, 0.25


def verdicts_file(home: str | Path | None = None) -> Path:
    return Path(home or reid_home()) / "models" / "onnx_runtimes.json"


def read_verdicts(store: Path) -> dict[str, dict]:
    """The verdicts so far; an unreadable file counts as none (they are measured again)."""
    try:
        return json.loads(store.read_text()) if store.is_file() else {}
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s): measuring again", store, exc)
        return {}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """The CPU and the runtimes' versions: a verdict holds for this combination only."""
    import onnxruntime

    cores = len(os.sched_getaffinity(0))
    return (
        f"{cpu_name()} x{cores}, onnxruntime {onnxruntime.__version__}, "
        f"openvino {import_openvino().__version__}"
    )


def calls_per_s(embedder: OrtEmbedder | OpenVinoEmbedder, batch: np.ndarray) -> float:
    """Over at least ``SAMPLE_S`` and two calls: shorter bursts favoured ONNX Runtime."""
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < SAMPLE_S:
        embedder.run(batch)
        calls += 1
    return calls / (time.perf_counter() - start)


def openvino_speedup(ort: OrtEmbedder, ov: OpenVinoEmbedder) -> float:
    """Median over interleaved rounds of OpenVINO's images/s over ONNX Runtime's."""
    batch = np.random.default_rng(0).standard_normal((BATCH, 3, *ort.input_size), np.float32)
    for runtime in (ort, ov):
        runtime.run(batch)  # warm-up: the first call of a shape compiles kernels
    ratios = [calls_per_s(ov, batch) / calls_per_s(ort, batch) for _ in range(ROUNDS)]
    return statistics.median(ratios)


def fastest_on_cpu(path: Path, home: str | Path | None = None) -> Embedder:
    """ONNX Runtime's or OpenVINO's embedder for ``path``, whichever is faster here."""
    if not openvino_installed():
        log.warning("%s runs on ONNX Runtime (%s: often faster on CPUs)", path.name, INSTALL_HINT)
        return OrtEmbedder(path, prefer_cuda=False)
    store = verdicts_file(home)
    key = f"{sha256_of(path)} on {machine()}"
    verdicts = read_verdicts(store)
    if key in verdicts:
        if verdicts[key]["openvino_speedup"] >= 1.0:
            return OpenVinoEmbedder(path)
        return OrtEmbedder(path, prefer_cuda=False)
    ort = OrtEmbedder(path, prefer_cuda=False)
    try:
        ov = OpenVinoEmbedder(path)
    except EmbedderError as exc:  # an operator OpenVINO lacks: ONNX Runtime runs it
        log.warning("%s runs on ONNX Runtime: OpenVINO cannot compile it (%s)", path.name, exc)
        return ort
    # decided on the figure recorded, so this start and every later one choose alike
    speedup = round(openvino_speedup(ort, ov), 3)
    verdicts[key] = {"model": str(path), "openvino_speedup": speedup}
    store.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=store.parent, suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        json.dump(verdicts, out, indent=2)
    os.replace(tmp, store)  # several workers may start at once: the last verdict stays
    chosen: Embedder = ov if speedup >= 1.0 else ort
    log.info(
        "%s runs on %s on this CPU: OpenVINO fp32 at %.2fx ONNX Runtime's speed (measured "
        "once, kept in %s)",
        path.name,
        chosen.name,
        speedup,
        store,
    )
    return chosen
