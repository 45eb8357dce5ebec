"""Re-match a finished run with another model, without detecting or tracking again.

The run's recorded summaries (:mod:`pipeline.run_record`) are re-embedded from their crops
with the new model and decided again, in their original order and batches, into the run's namespace
(cleared first: the old embeddings live in another feature space), then re-associated over
the whole run; ``mtmc.txt``, ``ids.json`` and ``identities.json`` are rewritten. This is the
last step of ``reid-pipeline adapt`` and works for any model a user brings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.matcher import Matcher
from pipeline.matcher.relink import RelinkReport
from pipeline.matcher.session import MatchingSession
from pipeline.matcher.store import Store
from pipeline.run_record import read_batches, read_tracklets, write_identities, write_mtmc
from pipeline.runner import build_embedder


def rematch(
    run: str | Path,
    config: PipelineConfig,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[dict[tuple[str, int], str | None], RelinkReport]:
    """Re-decide every recorded summary of ``run`` with ``config.reid.model``; the final
    identity of each tracklet and the closing re-association's report."""
    run = Path(run)
    embedder, scorer = build_embedder(config.reid)
    store = Store.open(config.redis.url, config.redis.namespace)
    store.clear()
    matcher = Matcher(config=config.matcher, scorer=scorer, store=store)
    session = MatchingSession(matcher)  # the policy the run followed, on its batches
    count = 0
    for batch in read_batches(run, embedder):
        session.submit(batch)
        count += len(batch)
        if on_progress is not None:
            on_progress(count)
    reports = session.finish()
    report = reports[-1] if reports else matcher.relink()
    final = {
        (t.camera_id, t.track_id): matcher.identity_of(t.camera_id, t.track_id)
        for t in read_tracklets(run)
    }

    def lookup(camera: str, track: int) -> str | None:
        return final.get((camera, track))

    write_identities(run, list(final), lookup)
    write_mtmc(run, lookup, cameras=[c.id for c in config.cameras])
    return final, report
