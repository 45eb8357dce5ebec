"""The camera topology re-association learned: transit times per ordered camera pair, as a
table (``reid-query topology``, ``GET /api/topology``) and a plot (PNG)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

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


def topology_png(samples: Mapping[Pair, Sequence[float]]) -> bytes:
    """One panel per camera pair: the links' transit times and their Parzen density."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    pairs = [p for p in sorted(samples) if len(samples[p])]
    if not pairs:
        raise ValueError("no transit times learned yet: run re-association first")
    columns = min(3, len(pairs))
    rows = int(np.ceil(len(pairs) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.6 * rows), squeeze=False)
    for ax in axes.ravel()[len(pairs) :]:
        ax.axis("off")
    for ax, pair in zip(axes.ravel(), pairs, strict=False):
        gaps = np.asarray(samples[pair], np.float64)
        density = _density(gaps)
        grid = density.lo + (np.arange(len(density.pdf)) + 0.5) * STEP_S
        ax.hist(gaps, bins=min(30, max(5, len(gaps))), density=True, alpha=0.4, color="tab:blue")
        ax.plot(grid, density.pdf, color="tab:red")
        ax.set_title(f"{pair[0]} -> {pair[1]} ({len(gaps)} links)", fontsize=9)
        ax.set_xlabel("transit time (s)", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()
