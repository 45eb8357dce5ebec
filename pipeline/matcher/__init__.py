"""Cross-camera identity matcher with its state in Redis."""

from pipeline.matcher.config import MatcherConfig, TransitRule
from pipeline.matcher.connection import RedisUnavailable, connect
from pipeline.matcher.matcher import Matcher, MatcherBusy
from pipeline.matcher.reader import IdentityReader
from pipeline.matcher.session import MatchingSession, RelinkLease
from pipeline.matcher.store import RetryPolicy, Store
from pipeline.matcher.types import Decision, Sighting, Tracklet, TrackletError

__all__ = [
    "Decision",
    "IdentityReader",
    "Matcher",
    "MatcherBusy",
    "MatcherConfig",
    "MatchingSession",
    "RedisUnavailable",
    "RelinkLease",
    "RetryPolicy",
    "Store",
    "Sighting",
    "Tracklet",
    "TrackletError",
    "TransitRule",
    "connect",
]
