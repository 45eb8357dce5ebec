"""The camera topology re-association learned, as tables (``reid-query topology``,
``GET /api/topology``, ``GET /api/camera-links``) and a plot (PNG): transit times per ordered
camera pair from confident links, and (``matcher.camera_links``) the exit and entry zones
of each camera with the links between them learned from when tracks end and begin."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.matcher.evidence import Density

Pair = tuple[str, str]
STEP_S = 0.5


def topology_rows(samples: Mapping[Pair, Sequence[float]]) -> list[dict[str, object]]:
    """Per ordered camera pair: confident links, mode, median and 10-90% spread (s)."""
    rows = []
    for (source, target), times in sorted(samples.items()):
        gaps = np.asarray(times, np.float64)
        if not len(gaps):
            continue
        rows.append(
            {
                "source": source,
                "target": target,
                "links": len(gaps),
                "mode_s": round(_density(gaps).mode, 2),
                "median_s": round(float(np.median(gaps)), 2),
                "spread_s": round(float(np.subtract(*np.percentile(gaps, [90, 10]))), 2),
            }
        )
    return rows


def _density(gaps: np.ndarray) -> Density:
    lo, hi = float(gaps.min()) - 10.0, float(gaps.max()) + 10.0
    return Density.fit(gaps, lo, hi, STEP_S, 1.0)


def topology_png(
    samples: Mapping[Pair, Sequence[float]], links: Mapping[str, Sequence[dict]] | None = None
) -> bytes:
    """One panel per camera pair (the links' transit times and their Parzen density), then
    one per camera with its exit and entry zones (``links``: the camera links' summary)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    pairs = [p for p in sorted(samples) if len(samples[p])]
    zones = list(links["zones"]) if links else []
    cameras = sorted({str(z["camera"]) for z in zones})
    panels = len(pairs) + len(cameras)
    if not panels:
        raise ValueError("no transit times learned yet: run re-association first")
    columns = min(3, panels)
    rows = int(np.ceil(panels / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.8 * rows), squeeze=False)
    for ax in axes.ravel()[panels:]:
        ax.axis("off")
    for ax, pair in zip(axes.ravel(), pairs, strict=False):
        gaps = np.asarray(samples[pair], np.float64)
        density = _density(gaps)
        grid = density.lo + (np.arange(len(density.pdf)) + 0.5) * STEP_S
        ax.hist(gaps, bins=min(30, max(5, len(gaps))), density=True, alpha=0.4, color="tab:blue")
        ax.plot(grid, density.pdf, color="tab:red")
        ax.set_title(f"{pair[0]} -> {pair[1]} ({len(gaps)} links)", fontsize=9)
        ax.set_xlabel("transit time (s)", fontsize=8)
    for ax, camera in zip(axes.ravel()[len(pairs) :], cameras, strict=False):
        _zones_panel(ax, camera, zones, list(links["links"]) if links else [])
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def _zones_panel(ax: Any, camera: str, zones: list[dict], links: list[dict]) -> None:
    """A camera's zones at their mean foot points (image coordinates: y grows downwards),
    each exit labelled with where its links lead."""
    for zone in (z for z in zones if z["camera"] == camera):
        exit_ = zone["kind"] == "exit"
        ax.scatter(
            zone["x"],
            zone["y"],
            s=60 + 400 * zone["share"],
            marker="x" if exit_ else "o",
            color="tab:red" if exit_ else "tab:green",
        )
        leads = [
            f"{link['target']}:{link['entry_zone']} {link['transit_s']:g}s"
            for link in links
            if exit_ and link["source"] == camera and link["exit_zone"] == zone["zone"]
        ]
        label = f"{zone['kind']} {zone['zone']}" + (f" -> {', '.join(leads)}" if leads else "")
        ax.annotate(
            label, (zone["x"], zone["y"]), fontsize=7, xytext=(4, 4), textcoords="offset points"
        )
    ax.invert_yaxis()
    ax.set_title(f"{camera}: exit (x) and entry (o) zones", fontsize=9)
    ax.set_xlabel("foot point x (px)", fontsize=8)
