"""The pairs of a site's tracklets that its footage says are different people.

Shared by pseudo-identities (they never join such a pair) and self-validation (such pairs
are its negatives), so both read the footage the same way.
"""

from __future__ import annotations

import numpy as np

from reid.data.run_folder import RunMaterial
from reid.runtime.clustering import cannot_links

RUN_SPACING_S = 1e7  # runs are laid end to end in time: no cannot-link across runs


def site_cannot_links(material: RunMaterial) -> np.ndarray:
    """``[P, 2]`` tracklet index pairs (i < j): seen at the same time in one camera, or in
    two cameras whose views do not overlap (``cameras.json``), within one run."""
    tracklets = material.tracklets
    return cannot_links(
        np.array([t.start + t.run * RUN_SPACING_S for t in tracklets]),
        np.array([t.end + t.run * RUN_SPACING_S for t in tracklets]),
        [t.camera for t in tracklets],
        material.overlaps,
    )
