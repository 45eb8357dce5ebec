"""Re-id dataset readers for folders the user already has; nothing is downloaded.

Benchmarks (Market-1501, DukeMTMC-reID, CUHK03-NP) use their standard layout::

    <root>/bounding_box_train/  <root>/query/  <root>/bounding_box_test/

with file names ``<pid>_c<camera>...``. Site data is what the pipeline writes for collected
crops::

    <root>/<identity>/<camera>_<timestamp>_<n>.jpg

and is split into train / query / gallery by identity.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reid.preprocess import IMAGE_SUFFIXES

BENCHMARK_SPLITS = ("bounding_box_train", "query", "bounding_box_test")
_BENCHMARK_NAME = re.compile(r"^(-?\d+)_c(\d+)")
JUNK_PID = -1


class DatasetError(ValueError):
    """A dataset root is missing, incomplete or holds unreadable files."""


@dataclass(frozen=True)
class Sample:
    """One crop: its file, identity (training ids relabelled 0..K-1) and 0-based camera."""

    path: Path
    pid: int
    camid: int


@dataclass(frozen=True)
class ReidDataset:
    """Train, query and gallery splits of one dataset."""

    name: str
    train: tuple[Sample, ...]
    query: tuple[Sample, ...]
    gallery: tuple[Sample, ...]

    @property
    def num_train_pids(self) -> int:
        return len({s.pid for s in self.train})

    def summary(self) -> str:
        def row(split: str, samples: tuple[Sample, ...]) -> str:
            pids = len({s.pid for s in samples})
            cams = len({s.camid for s in samples})
            return f"  {split:<8} {pids:>6} ids {len(samples):>7} images {cams:>3} cameras"

        return "\n".join(
            [f"{self.name}:"]
            + [
                row(n, s)
                for n, s in (
                    ("train", self.train),
                    ("query", self.query),
                    ("gallery", self.gallery),
                )
            ]
        )


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _relabel(samples: list[Sample]) -> list[Sample]:
    mapping = {pid: i for i, pid in enumerate(sorted({s.pid for s in samples}))}
    return [Sample(s.path, mapping[s.pid], s.camid) for s in samples]


def _read_benchmark_split(folder: Path) -> list[Sample]:
    samples = []
    for path in _images(folder):
        match = _BENCHMARK_NAME.match(path.name)
        if match is None:
            raise DatasetError(f"{path}: file name does not start with <pid>_c<camera>")
        pid, cam = int(match.group(1)), int(match.group(2))
        if pid == JUNK_PID:
            continue
        samples.append(Sample(path, pid, cam - 1))
    if not samples:
        raise DatasetError(f"{folder}: holds no images")
    return samples


def _locate(root: Path, nested: tuple[str, ...], name: str) -> Path:
    """``root`` itself or the first of its ``nested`` folders that has the benchmark splits."""
    if not root.is_dir():
        raise DatasetError(f"{name} root {root} does not exist or is not a folder")
    for candidate in (root, *(root / n for n in nested)):
        if all((candidate / split).is_dir() for split in BENCHMARK_SPLITS):
            return candidate
    missing = [s for s in BENCHMARK_SPLITS if not (root / s).is_dir()]
    raise DatasetError(
        f"{name} root {root} is missing {', '.join(m + '/' for m in missing)} "
        f"(expected {root}/{{{','.join(BENCHMARK_SPLITS)}}}/ with <pid>_c<camera>_*.jpg files"
        + (f", or one of the sub-folders {', '.join(nested)}" if nested else "")
        + ")"
    )


def read_benchmark(root: str | Path, name: str, nested: tuple[str, ...] = ()) -> ReidDataset:
    """Any dataset in the Market-1501 layout (also what the synthetic generator writes)."""
    base = _locate(Path(root), nested, name)
    train, query, gallery = (_read_benchmark_split(base / s) for s in BENCHMARK_SPLITS)
    return ReidDataset(name, tuple(_relabel(train)), tuple(query), tuple(gallery))


def market1501(root: str | Path) -> ReidDataset:
    return read_benchmark(root, "Market-1501", ("Market-1501-v15.09.15",))


def dukemtmc(root: str | Path) -> ReidDataset:
    return read_benchmark(root, "DukeMTMC-reID", ("DukeMTMC-reID",))


def cuhk03_np(root: str | Path, labeled: bool = False) -> ReidDataset:
    kind = "labeled" if labeled else "detected"
    return read_benchmark(root, f"CUHK03-NP ({kind})", (kind, f"cuhk03-np/{kind}"))


def parse_site_name(path: Path) -> tuple[str, float]:
    """``<camera>_<timestamp>_<n>.jpg`` -> (camera, timestamp); cameras may contain ``_``,
    ``<n>`` anything without one (the pipeline writes ``<track>-<crop>``)."""
    parts = path.stem.rsplit("_", 2)
    if len(parts) != 3:
        raise DatasetError(f"{path}: expected <camera>_<timestamp>_<n>{path.suffix}")
    try:
        return parts[0], float(parts[1])
    except ValueError as exc:
        raise DatasetError(f"{path}: timestamp {parts[1]!r} is not a number") from exc


def site(root: str | Path, train_fraction: float = 0.5, seed: int = 0) -> ReidDataset:
    """Crops collected by the pipeline, split by identity.

    A ``train_fraction`` of the identities (shuffled by ``seed``) trains; for each other
    identity the earliest crop of each camera is a query and the rest are gallery.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"site data root {root} does not exist or is not a folder")
    if not 0.0 < train_fraction < 1.0:
        raise DatasetError(f"train_fraction must be in (0, 1), got {train_fraction}")
    crops: dict[str, list[tuple[str, float, Path]]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = _images(folder)
        if files:
            crops[folder.name] = [(*parse_site_name(p), p) for p in files]
    if len(crops) < 2:
        raise DatasetError(
            f"site data root {root} needs at least 2 identity folders of crops "
            "(<root>/<identity>/<camera>_<timestamp>_<n>.jpg), found "
            f"{len(crops)}"
        )
    cameras = {c: i for i, c in enumerate(sorted({c for v in crops.values() for c, _, _ in v}))}
    identities = sorted(crops)
    random.Random(seed).shuffle(identities)
    n_train = min(max(1, round(train_fraction * len(identities))), len(identities) - 1)
    pid_of = {name: i for i, name in enumerate(sorted(crops))}
    train = [
        Sample(p, pid_of[name], cameras[c])
        for name in identities[:n_train]
        for c, _, p in crops[name]
    ]
    query: list[Sample] = []
    gallery: list[Sample] = []
    for name in identities[n_train:]:
        first_of_camera: dict[str, Path] = {}
        for camera, _, path in sorted(crops[name], key=lambda item: item[1]):
            first_of_camera.setdefault(camera, path)
        for camera, _, path in crops[name]:
            split = query if first_of_camera[camera] == path else gallery
            split.append(Sample(path, pid_of[name], cameras[camera]))
    return ReidDataset(f"site:{root.name}", tuple(_relabel(train)), tuple(query), tuple(gallery))


DATASETS: dict[str, Callable[[Path], ReidDataset]] = {
    "market1501": market1501,
    "dukemtmc": dukemtmc,
    "cuhk03_np_detected": cuhk03_np,
    "cuhk03_np_labeled": lambda root: cuhk03_np(root, labeled=True),
    "synthetic": lambda root: read_benchmark(root, "synthetic"),
    "site": site,
}


def load_dataset(name: str, root: str | Path) -> ReidDataset:
    """Read dataset ``name`` (a key of :data:`DATASETS`) from ``root``."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid datasets: {sorted(DATASETS)}")
    return DATASETS[name](Path(root))


def group_by_pid(samples: tuple[Sample, ...] | list[Sample]) -> dict[int, list[int]]:
    """Indices of ``samples`` per identity."""
    groups: dict[int, list[int]] = defaultdict(list)
    for index, sample in enumerate(samples):
        groups[sample.pid].append(index)
    return dict(groups)
