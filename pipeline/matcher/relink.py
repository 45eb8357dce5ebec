"""Re-association in Redis: re-cluster a window of recorded tracklets and apply the merges
and splits atomically (``lua/reassign.lua``), so early mistakes of the online matcher are
repaired when later evidence disagrees.

Clusters are mapped back to identities by overlap: each identity stays with the cluster
holding most of its tracklets (each cluster keeps at most one identity); a cluster that keeps
none founds a new identity (a *split*, ``split_from`` recorded); an identity left with no
tracklet is *merged* into the identity that took most of its tracklets (``merged_into``
recorded, so its old id still resolves).
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import cast

import numpy as np

from pipeline.matcher.association import AttentionInputs, Calibration, associate
from pipeline.matcher.camera_links import CameraLinks
from pipeline.matcher.codec import (
    RECORD_FIELDS,
    Recorded,
    decode_record,
    decode_sighting,
    identity_id,
    mean_vector,
    parse_ref,
    track_ref,
)
from pipeline.matcher.config import MatcherConfig
from pipeline.matcher.evidence import TransitModel
from pipeline.matcher.handover import Handover
from pipeline.matcher.rewrite import Rewrite, Rewriter, read_recorded
from pipeline.matcher.store import Store
from pipeline.matcher.types import Tracklet
from reid.runtime.pair_scoring import AttentionScorer


@dataclass
class RelinkPlan:
    moves: list[tuple[str, str, str]] = field(default_factory=list)  # (ref, from, to)
    splits: dict[str, str] = field(default_factory=dict)  # new identity -> split from
    merges: dict[str, str] = field(default_factory=dict)  # retired identity -> survivor
    members: dict[str, list[str]] = field(default_factory=dict)  # touched id -> window refs


def plan_relink(
    window: Sequence[Recorded],
    labels: Sequence[int],
    outside: dict[str, int],
    new_id: Callable[[str], str],
) -> RelinkPlan:
    """What to change so identities follow the clusters ``labels`` of ``window``.

    ``outside``: per identity, how many of its tracklets lie outside the window (they stay);
    ``new_id(ref)``: the id a split founded by tracklet ``ref`` gets.
    """
    clusters: dict[int, list[int]] = defaultdict(list)
    for n, label in enumerate(labels):
        clusters[label].append(n)
    overlap = sorted(
        (
            (-count, min(window[n].ref for n in members), label, identity)
            for label, members in clusters.items()
            for identity, count in Counter(window[n].identity for n in members).items()
        ),
    )
    owner: dict[int, str] = {}
    taken: set[str] = set()
    for _, _, label, identity in overlap:
        if label not in owner and identity not in taken:
            owner[label] = identity
            taken.add(identity)
    plan = RelinkPlan()
    for label, members in sorted(clusters.items()):
        if label not in owner:
            founder = min(members, key=lambda n: (window[n].start, window[n].ref))
            owner[label] = new_id(window[founder].ref)
            majority = Counter(window[n].identity for n in members).most_common(1)[0][0]
            plan.splits[owner[label]] = majority
    before: dict[str, list[int]] = defaultdict(list)
    after: dict[str, list[int]] = defaultdict(list)
    for label, members in clusters.items():
        for n in members:
            before[window[n].identity].append(n)
            after[owner[label]].append(n)
            if window[n].identity != owner[label]:
                plan.moves.append((window[n].ref, window[n].identity, owner[label]))
    moved_from = {m[1] for m in plan.moves}
    moved_to = {m[2] for m in plan.moves}
    for identity in moved_from:
        if not after.get(identity) and not outside.get(identity):
            destinations = Counter(m[2] for m in plan.moves if m[1] == identity)
            plan.merges[identity] = destinations.most_common(1)[0][0]
    for identity in (moved_from | moved_to) - set(plan.merges):
        plan.members[identity] = [window[n].ref for n in after.get(identity, [])]
    return plan


def relink_offline(
    tracklets: Sequence[Tracklet], identities: Mapping[str, str], config: MatcherConfig
) -> dict[str, str]:
    """Re-association without Redis: the final identity of each ``camera:track`` of
    ``tracklets`` whose online identity ``identities`` gives, after clustering them as
    re-association in Redis would (a run whose Redis was lost still ends re-associated)."""
    window = [
        Recorded(t.camera_id, t.track_id, t.start, t.end, identities[ref], mean_vector(t), t.path)
        for t in tracklets
        if (ref := track_ref(t.camera_id, t.track_id)) in identities
    ]
    if not window:
        return {}
    labels = associate([r.as_tracklet() for r in window], config).labels
    plan = plan_relink(window, labels, {}, lambda ref: identity_id(f"offline|{ref}"))
    final = {r.ref: r.identity for r in window}
    final.update({ref: target for ref, _, target in plan.moves})
    return final


@dataclass(frozen=True)
class RelinkReport:
    tracklets: int
    clusters: int
    moves: int
    splits: dict[str, str]
    merges: dict[str, str]
    calibration: Calibration
    seconds: float
    round_trips: int
    attention_weight: float = 0.0
    attention_auc: dict[str, float] | None = None

    def as_dict(self) -> dict:
        return {
            "tracklets": self.tracklets,
            "clusters": self.clusters,
            "moves": self.moves,
            "splits": self.splits,
            "merges": self.merges,
            "calibration": self.calibration.as_dict(),
            "seconds": round(self.seconds, 3),
            "round_trips": self.round_trips,
            "attention_weight": self.attention_weight,
            "attention_auc": self.attention_auc,
        }


class Reassociator:
    """Re-association of one namespace.

    Args:
        store: the namespace's Redis state.
        config: the matcher settings (calibration, gates, transit model, retention).
        scorer: attention-consistency scorer, when the model exports one.
    """

    def __init__(
        self, store: Store, config: MatcherConfig, scorer: AttentionScorer | None = None
    ) -> None:
        self.store, self.config, self.scorer = store, config, scorer
        self.keys, self.redis = store.keys, store.redis
        self._rewriter = Rewriter(store, config)
        self.round_trips = 0

    def _window(self, since: float | None, epoch: str | None) -> tuple[int, list[Recorded]]:
        """The gallery version and the recorded tracklets that ended at or after ``since``
        on the footage clock ``epoch`` (every clock when None)."""
        # RESP2 (the protocol connect speaks), no scores asked: the members
        refs = cast(
            "list[bytes]",
            self.redis.zrangebyscore(
                self.keys.tracklets, "-inf" if since is None else since, "+inf"
            ),
        )
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(self.keys.version)
        for ref in refs:
            pipe.hmget(self.keys.tracklet(*parse_ref(ref)), *RECORD_FIELDS)
        version, *rows = pipe.execute()
        self.round_trips += 2
        window = [
            recorded
            for ref, row in zip(refs, rows, strict=True)
            if (recorded := decode_record(ref, row)) is not None
            and recorded.vector.size  # recorded before re-association existed
            and (epoch is None or recorded.epoch == epoch)
        ]
        return int(version or 0), window

    def _attention(self, window: list[Recorded]) -> AttentionInputs | None:
        """Attention inputs when the matcher has a scorer and every tracklet its map."""
        scorer = self.scorer
        maps = [r.rep_attention for r in window if r.rep_attention is not None]
        if scorer is None or not window or len(maps) < len(window):
            return None
        features = [r.rep_feature for r in window if r.rep_feature is not None]
        assert len(features) == len(window)  # recorded with its map (commit.lua)
        return AttentionInputs(scorer, np.stack(features), np.stack(maps))

    def _outside(self, identities: set[str], window_refs: set[str]) -> dict[str, list[Recorded]]:
        """Each identity's recorded tracklets that are not in the window."""
        names = sorted(identities)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.zrange(self.keys.sightings(name), 0, -1)
        sightings = {
            name: [decode_sighting(name, m) for m in members]
            for name, members in zip(names, pipe.execute(), strict=True)
        }
        self.round_trips += 1
        wanted = [
            s
            for name in names
            for s in sightings[name]
            if track_ref(s.camera_id, s.track_id) not in window_refs
        ]
        found: dict[str, list[Recorded]] = {name: [] for name in names}
        for row in read_recorded(self.store, wanted):
            found[row.identity].append(row)
        self.round_trips += 1 if wanted else 0
        return found

    def run(self, since: float | None = None, epoch: str | None = None) -> RelinkReport:
        """Re-cluster the tracklets that ended at or after ``since`` (all when None) on the
        footage clock ``epoch`` (None: every clock, e.g. ``reid-pipeline relink`` of a
        namespace that holds one run)."""
        started = time.perf_counter()
        self.round_trips = 0
        config = self.config
        for _ in range(config.max_retries):
            version, window = self._window(since, epoch)
            result = associate(
                [r.as_tracklet() for r in window], config, attention=self._attention(window)
            )
            labels, calibration = result.labels, result.calibration
            if calibration.learned:
                self._store(calibration, result.transit, result.links, result.handover)
            by_ref = {r.ref: r for r in window}
            current = {r.identity for r in window}
            outside = self._outside(current, set(by_ref)) if window else {}
            plan = plan_relink(
                window,
                labels,
                {name: len(rows) for name, rows in outside.items()},
                partial(self._split_id, version=version),
            )
            if not plan.moves:
                status = "ok"
                break
            status = self._apply(version, plan, by_ref, outside)
            if status == "ok":
                break
        else:
            raise RuntimeError(f"re-association lost {config.max_retries} times to live matchers")
        return RelinkReport(
            len(window),
            len(set(labels)),
            len(plan.moves),
            plan.splits,
            plan.merges,
            calibration,
            time.perf_counter() - started,
            self.round_trips,
            result.attention_weight,
            result.attention_auc,
        )

    def _store(
        self,
        calibration: Calibration,
        transit: TransitModel | None,
        links: CameraLinks | None,
        handover: Handover | None,
    ) -> None:
        """Keep what the site taught (threshold, transit times of confident links, camera
        links from exits and entries, hand-overs) in Redis, for ``reid-query topology``,
        ``reid-query camera-links`` and the page."""
        ttl = int(self.config.retention_s)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            self.keys.calibration,
            mapping={k: json.dumps(v) for k, v in calibration.as_dict().items()},
        )
        pipe.expire(self.keys.calibration, ttl)
        if transit is not None and transit.samples:
            pipe.delete(self.keys.topology)
            pipe.hset(
                self.keys.topology,
                mapping={
                    f"{a}\t{b}": json.dumps([round(float(g), 3) for g in gaps])
                    for (a, b), gaps in transit.samples.items()
                },
            )
            pipe.expire(self.keys.topology, ttl)
        if (links is not None and links.same) or handover is not None:
            learned: dict[str, object] = {"zones": [], "links": []}
            if links is not None:
                learned.update(links.summary())
            if handover is not None:
                learned["handovers"] = handover.summary()
            pipe.set(self.keys.camera_links, json.dumps(learned), ex=ttl)
        pipe.execute()
        self.round_trips += 1

    def _split_id(self, ref: str, version: int) -> str:
        return identity_id(f"{self.keys.namespace}|split|{ref}|{version}")

    def _apply(
        self,
        version: int,
        plan: RelinkPlan,
        by_ref: dict[str, Recorded],
        outside: dict[str, list[Recorded]],
    ) -> str:
        members = {
            name: [by_ref[r] for r in refs] + outside.get(name, [])
            for name, refs in plan.members.items()
        }
        rewrite = Rewrite(plan.moves, plan.splits, plan.merges, members)
        self.round_trips += 1
        return self._rewriter.apply(version, rewrite)
