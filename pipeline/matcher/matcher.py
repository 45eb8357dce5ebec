"""Cross-camera identity linking: the decisions.

Each tracklet is scored against its top-k candidate identities (best exemplar pair, plus
attention consistency when the model exports it), gated (never in two places at once,
topology), and linked to the closest admissible one or founds an identity; tracklets that
end together and are certainly different people are assigned jointly (one Hungarian
assignment). Every decision is committed atomically by the :class:`Gallery`; periodic
re-association (:mod:`pipeline.matcher.relink`) revisits them with all the evidence; when
each happens is the matching session's policy (:mod:`pipeline.matcher.session`).
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import redis
from scipy.optimize import linear_sum_assignment

from pipeline.matcher.association import cannot_link_pairs
from pipeline.matcher.codec import Exemplars
from pipeline.matcher.config import MatcherConfig
from pipeline.matcher.gallery import Gallery
from pipeline.matcher.gates import rejection
from pipeline.matcher.index import one_blas_thread
from pipeline.matcher.keys import Keys
from pipeline.matcher.reader import IdentityReader
from pipeline.matcher.relink import Reassociator, RelinkReport
from pipeline.matcher.store import Store
from pipeline.matcher.types import Decision, Sighting, Tracklet, TrackletError
from reid.runtime.pair_scoring import AttentionScorer, combine

log = logging.getLogger(__name__)


# where the names a Matcher inherited live now
MOVED = {
    **dict.fromkeys(
        (
            "trajectory",
            "resolve",
            "identities",
            "topology",
            "identity_info",
            "dead_letters",
            "call_with_retry",
        ),
        "reader",
    ),
    **dict.fromkeys(("index", "round_trips", "new_identity_id"), "gallery"),
}


class Plan(NamedTuple):
    """What a decision will commit."""

    identity: str
    action: str  # new_identity, link or update
    exemplars: Exemplars
    distance: float | None
    considered: int  # candidate identities looked at


class MatcherBusy(RuntimeError):
    """Commits kept losing to concurrent matchers for ``max_retries`` attempts."""


class Matcher:
    """Links tracklets into global identities: the decisions. Its parts each take the
    namespace's :class:`~pipeline.matcher.store.Store`: the gallery in Redis
    (:attr:`gallery`), re-association (:attr:`reassociator`) and the read model
    (:attr:`reader`); none knows the others.

    Args:
        redis_url: ``redis://`` / ``rediss://`` / ``unix://`` URL; None starts the embedded
            server (:func:`pipeline.matcher.connection.connect`).
        namespace: key namespace (several deployments can share one Redis).
        config: thresholds, gates and retention; None uses :class:`MatcherConfig` defaults.
        scorer: attention-consistency scorer (numpy, ``ConsistencyScorer.to_numpy()``) for
            tracklets that carry attention; without it matching is feature-only.
        client: an existing redis-py client (takes precedence over ``redis_url``).
        store: the namespace's store (takes precedence over the three above).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        namespace: str = "reid",
        config: MatcherConfig | None = None,
        scorer: AttentionScorer | None = None,
        client: redis.Redis | None = None,
        *,
        store: Store | None = None,
    ) -> None:
        self.store = store or Store.open(redis_url, namespace, client)
        self.config = config or MatcherConfig()
        self.scorer = scorer
        self.gallery = Gallery(self.store, self.config)
        self.reader = IdentityReader(store=self.store)
        self.reassociator = Reassociator(self.store, self.config, scorer)

    @property
    def redis(self) -> redis.Redis:
        return self.store.redis

    def __getattr__(self, name: str) -> Any:
        """Names a Matcher had while it inherited the gallery and the read model: they keep
        working for a release, with a warning naming their part."""
        part = MOVED.get(name)
        if part is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        warnings.warn(
            f"Matcher.{name} is deprecated: use matcher.{part}.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(getattr(self, part), name)

    @property
    def keys(self) -> Keys:
        return self.store.keys

    # -- decisions -----------------------------------------------------------------------
    def _distances(self, tracklet: Tracklet, candidates: list[Exemplars]) -> list[float]:
        """Combined distance of ``tracklet`` to each candidate (best exemplar pair)."""
        pairs, feature_d = [], []
        for ex in candidates:
            sims = tracklet.features @ ex.features.T
            i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
            pairs.append((int(i), int(j)))
            feature_d.append(float(np.clip((1.0 - sims[i, j]) / 2.0, 0.0, 1.0)))
        w = self.config.attention_weight
        query_att = tracklet.projections
        if w == 0.0 or self.scorer is None or query_att is None:
            return feature_d
        usable = [
            (n, ex.projections)
            for n, ex in enumerate(candidates)
            if ex.projections is not None and ex.projections.shape[1:] == query_att.shape[1:]
        ]
        if not usable:
            return feature_d
        attention_d = self.scorer.distance(
            np.stack([tracklet.features[pairs[n][0]] for n, _ in usable]),
            np.stack([query_att[pairs[n][0]] for n, _ in usable]),
            np.stack([candidates[n].features[pairs[n][1]] for n, _ in usable]),
            np.stack([att[pairs[n][1]] for n, att in usable]),
        )
        combined = list(feature_d)
        looks = np.array([feature_d[n] for n, _ in usable])
        for (n, _), d in zip(usable, combine(looks, attention_d, w), strict=True):
            combined[n] = float(d)
        return combined

    def _admissible(
        self,
        tracklet: Tracklet,
        exemplars: list[Exemplars | None],
        sightings: list[list[Sighting]],
    ) -> list[tuple[int, float]]:
        """Candidates ``(position, distance)`` within ``link_threshold`` that the gates allow."""
        live = [n for n, ex in enumerate(exemplars) if ex is not None]
        distances = self._distances(tracklet, [ex for ex in exemplars if ex is not None])
        admissible = []
        for n, d in zip(live, distances, strict=True):
            if d > self.config.link_threshold:
                continue
            reason = rejection(tracklet, sightings[n], self.config)
            if reason is None:
                admissible.append((n, d))
            else:
                log.debug("%s not linked to candidate %d (d=%.3f): %s", tracklet.ref, n, d, reason)
        return admissible

    def _plan_update(self, tracklet: Tracklet, record: dict[bytes, bytes]) -> Decision | Plan:
        identity = record[b"identity"].decode()
        if tracklet.end <= float(record[b"end"]):
            return Decision(identity, "duplicate")
        (old,), _ = self.gallery.fetch([identity])
        return Plan(identity, "update", self.gallery.merge(old, tracklet), None, 1)

    def _execute(self, tracklet: Tracklet, plan: Plan, expected: int) -> Decision | None:
        identity, action, merged, distance, considered = plan
        got, outcome = self.gallery.commit(tracklet, identity, action, merged, distance, expected)
        if outcome in ("retry", "conflict"):
            return None
        if outcome == "duplicate":
            return Decision(got, "duplicate")
        return Decision(got, outcome, distance, considered)

    def check(self, tracklet: Tracklet, dim: int | None = None) -> None:
        """The namespace's feature size is its model's (recorded when a run starts), else
        that of the identities it holds, else ``dim``: another model's tracklet is refused."""
        dim = self.gallery.feature_dim or self.gallery.index.dim or dim
        if dim is not None and tracklet.features.shape[1] != dim:
            raise TrackletError(
                f"tracklet {tracklet.camera_id}:{tracklet.track_id} has "
                f"{tracklet.features.shape[1]}-d features but this namespace's gallery holds "
                f"{dim}-d ones: was it embedded by another model? (use another namespace)"
            )

    def _decide_once(self, tracklet: Tracklet) -> Decision | None:
        (record,) = self.gallery.sync([tracklet])
        self.check(tracklet)
        if record:
            plan = self._plan_update(tracklet, record)
            if isinstance(plan, Decision):
                return plan
        else:
            names = self.gallery.index.search(tracklet.features, self.config.top_k)
            exemplars, sightings = self.gallery.fetch(names)
            admissible = self._admissible(tracklet, exemplars, sightings)
            if not admissible:
                plan = self._plan_link(tracklet, None, None, None, len(names))
            else:
                n, d = min(admissible, key=lambda item: item[1])
                plan = self._plan_link(tracklet, names[n], exemplars[n], d, len(names))
        return self._execute(tracklet, plan, self.gallery.version)

    def _plan_link(
        self,
        tracklet: Tracklet,
        identity: str | None,
        exemplars: Exemplars | None,
        distance: float | None,
        considered: int,
    ) -> Plan:
        """Link to ``identity`` (with its ``exemplars``), or found one when it is None."""
        if identity is None:
            return Plan(
                self.gallery.new_identity_id(tracklet),
                "new_identity",
                self.gallery.merge(None, tracklet),
                None,
                considered,
            )
        return Plan(identity, "link", self.gallery.merge(exemplars, tracklet), distance, considered)

    def _decide_jointly(self, group: Sequence[Tracklet]) -> list[Decision | None]:
        """One assignment for tracklets that finished together (Hungarian): each links to at
        most one admissible identity, no identity takes two of them, founding a new identity
        costs ``link_threshold``. Commits go in one by one, each expecting the version its
        predecessor left; whatever a rival's commit interrupts is left None (decided alone)."""
        records = self.gallery.sync(group)
        for tracklet in group:
            self.check(tracklet)
        fresh = [n for n, record in enumerate(records) if not record]
        results: list[Decision | None] = [None] * len(group)
        if len(fresh) < 2:
            return results
        names = list(
            dict.fromkeys(
                name
                for n in fresh
                for name in self.gallery.index.search(group[n].features, self.config.top_k)
            )
        )
        exemplars, sightings = self.gallery.fetch(names)
        blocked = 1e6  # "not allowed" (linear_sum_assignment wants finite costs)
        cost = np.full((len(fresh), len(names) + len(fresh)), blocked)
        for row, n in enumerate(fresh):
            for col, d in self._admissible(group[n], exemplars, sightings):
                cost[row, col] = d
            cost[row, len(names) + row] = self.config.link_threshold
        rows, cols = linear_sum_assignment(cost)
        expected = self.gallery.version
        for row, col in zip(rows, cols, strict=True):
            tracklet = group[fresh[row]]
            linked = col < len(names)
            plan = self._plan_link(
                tracklet,
                names[col] if linked else None,
                exemplars[col] if linked else None,
                float(cost[row, col]) if linked else None,
                len(names),
            )
            decision = self._execute(tracklet, plan, expected)
            if decision is None:
                break
            results[fresh[row]] = decision
            expected += 1
        return results

    def decide_many(self, tracklets: Sequence[Tracklet]) -> list[Decision]:
        """Decide tracklets that end within ``joint_window_s`` of each other and are certainly
        different people (seen at once in one camera or in cameras that do not overlap, so
        one identity cannot take two of them) jointly (:meth:`_decide_jointly`); the rest,
        updates and whatever a rival interrupts one by one."""
        with one_blas_thread():
            return self._decide_many(tracklets)

    def _decide_many(self, tracklets: Sequence[Tracklet]) -> list[Decision]:
        order = sorted(range(len(tracklets)), key=lambda n: tracklets[n].end)
        decisions: dict[int, Decision] = {}
        group: list[int] = []
        window = self.config.joint_window_s

        def flush() -> None:
            if len(group) > 1 and window > 0:
                members = [tracklets[n] for n in group]
                apart = {(int(a), int(b)) for a, b in cannot_link_pairs(members, self.config)}
                together: list[int] = []
                for k in range(len(group)):
                    if all((m, k) in apart for m in together):
                        together.append(k)
                if len(together) > 1:
                    joint = self.store.call(self._decide_jointly, [members[k] for k in together])
                    decisions.update(
                        {group[k]: d for k, d in zip(together, joint, strict=True) if d}
                    )
            for n in group:
                if n not in decisions:
                    decisions[n] = self.decide(tracklets[n])
            group.clear()

        for n in order:
            if group and tracklets[n].end - tracklets[group[0]].end > window:
                flush()
            group.append(n)
        flush()
        return [decisions[n] for n in range(len(tracklets))]

    def decide(self, tracklet: Tracklet) -> Decision:
        """Link ``tracklet`` to an identity (or found one) and record it atomically."""
        for attempt in range(self.config.max_retries):
            with one_blas_thread():
                decision = self.store.call(self._decide_once, tracklet)
            if decision is not None:
                return decision
            time.sleep(random.uniform(0, 0.002 * min(attempt, 10)))  # de-synchronise rivals
        raise MatcherBusy(
            f"tracklet {tracklet.ref!r}: {self.config.max_retries} commits lost to "
            "concurrent matchers; raise matcher.max_retries or add Redis capacity"
        )

    def submit(self, tracklet: Tracklet) -> str:
        """The identity id ``tracklet`` now belongs to."""
        return self.decide(tracklet).identity

    def similar(self, features: np.ndarray, k: int = 10) -> list[tuple[str, float]]:
        """Deprecated: ``matcher.gallery.similar`` (search by image is the gallery's)."""
        warnings.warn(
            "Matcher.similar is deprecated: use matcher.gallery.similar",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.gallery.similar(features, k)

    def relink(self, since: float | None = None, epoch: str | None = None) -> RelinkReport:
        """Re-associate the tracklets that ended at or after ``since`` (footage time; all when
        None) on the footage clock ``epoch`` (every clock when None) and apply merges and
        splits atomically (:mod:`pipeline.matcher.relink`)."""
        return self.store.call(self.reassociator.run, since, epoch)

    def identity_of(self, camera_id: str, track_id: int) -> str | None:
        """The identity of a recorded track (the read model's answer)."""
        return self.reader.identity_of(camera_id, track_id)

    def clear(self) -> int:
        """Deprecated: clearing is an admin action, ``matcher.store.clear()``."""
        warnings.warn(
            "Matcher.clear is deprecated: use matcher.store.clear()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.store.clear()
