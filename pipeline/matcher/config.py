"""Matcher settings; every default is documented here and in docs/matcher.md."""

from __future__ import annotations

from pydantic import Field, model_validator

from reid.config import Settings


class TransitRule(Settings):
    """People may walk from camera ``source`` to ``target`` in ``[min_s, max_s]`` seconds."""

    source: str
    target: str
    min_s: float = Field(0.0, ge=0.0)
    max_s: float = Field(3600.0, gt=0.0)
    bidirectional: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> TransitRule:
        if self.max_s < self.min_s:
            raise ValueError(f"max_s ({self.max_s}) is below min_s ({self.min_s})")
        return self


class MatcherConfig(Settings):
    """How tracklets are linked into identities.

    Distances: ``d_feat = (1 - cos) / 2`` of the best exemplar pair, ``d_att`` the aligned
    attention-profile distance of that pair (0..1); ``d = (1 - w) d_feat + w d_att``.
    A tracklet links to the closest admissible candidate with ``d <= link_threshold``.
    """

    top_k: int = Field(10, ge=1, description="candidate identities re-scored per tracklet")
    link_threshold: float = Field(0.2, gt=0.0, le=1.0)
    false_links_per_tracklet: float = Field(
        0.35,
        gt=0.0,
        le=10.0,
        description="re-association's link threshold: how many known-different tracklets "
        "may, on average, fall within it of any one tracklet (the pair rate is this over the "
        "window's tracklet count, so the threshold tightens as the window grows)",
    )
    joint_window_s: float = Field(
        3.0,
        ge=0.0,
        description="tracklets ending this close together are assigned jointly "
        "(one Hungarian assignment); 0 = one by one",
    )
    relink_every_s: float = Field(
        30.0,
        ge=0.0,
        description="re-associate every this many seconds of footage; 0 = only "
        "at the end of a run and on demand (reid-pipeline relink)",
    )
    relink_window_s: float = Field(
        600.0, gt=0.0, description="re-associate the tracklets that ended this recently"
    )
    spatio_temporal: bool = Field(
        True, description="re-association also weighs learned camera-to-camera transit times"
    )
    camera_links: bool = Field(
        False,
        description="re-association also learns exit/entry zones per camera and the transit "
        "times between them from when tracks end and begin (no appearance link needed)",
    )
    handovers: bool = Field(
        True,
        description="re-association also learns, with no link known, how tracks that end are "
        "continued by tracks that begin (the tracker lost a person, or they crossed a blind "
        "zone): where, how soon, and how alike they look",
    )
    handover_max_s: float = Field(
        30.0, gt=0.0, description="longest gap between a track's end and its continuation"
    )
    appearance_per_camera_pair: bool = Field(
        False,
        description="re-association judges a distance against the cannot-links of the same "
        "camera pair (where it has at least 20) rather than of all pairs",
    )
    transit_max_s: float = Field(600.0, gt=0.0, description="longest transit time learned")
    transit_overlap_s: float = Field(
        60.0, ge=0.0, description="longest co-visibility learned for overlapping cameras"
    )
    attention_weight: float = Field(0.3, ge=0.0, le=1.0, description="w; 0 = feature only")
    exemplars_per_identity: int = Field(8, ge=1)
    retention_s: float = Field(7 * 24 * 3600.0, gt=0.0, description="TTL of all state")
    topology: tuple[TransitRule, ...] = Field(
        (), description="allowed camera pairs; empty = all pairs allowed, no transit limits"
    )
    overlapping: tuple[tuple[str, str], ...] = Field(
        (), description="camera pairs whose views overlap (one person in both at once)"
    )
    index_dim: int = Field(256, ge=8, description="projected dim of the in-process index")
    events_maxlen: int = Field(1_000_000, ge=1000, description="approximate events cap")
    max_retries: int = Field(50, ge=1, description="optimistic commit retries")
    footage_epoch: str | None = Field(
        None,
        max_length=128,
        description="the footage clock this run's tracklets are on; re-association compares "
        "only tracklets of one clock. None: 'wall' when every camera is live (times are the "
        "wall clock), else the run's own (a rerun over the same files is never confused with "
        "the run before). Set one name on every camera worker of a scale-out run over files",
    )

    def transit(self, source: str, target: str) -> TransitRule | None:
        for rule in self.topology:
            if (rule.source, rule.target) == (source, target) or (
                rule.bidirectional and (rule.target, rule.source) == (source, target)
            ):
                return rule
        return None

    def overlaps(self, a: str, b: str) -> bool:
        return (a, b) in self.overlapping or (b, a) in self.overlapping
