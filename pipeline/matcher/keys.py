"""Every Redis key of the matcher, from one place.

Schema (``ns`` = namespace, all keys share the hash tag ``{ns}`` so Lua scripts may touch
them together on Redis Cluster; ``v1`` versions the layout)::

    {ns}:v1:version               INT    commits so far (optimistic concurrency)
    {ns}:v1:identities            ZSET   identity -> last update (unix s)
    {ns}:v1:identity:<id>         HASH   created, last_seen (tracklet time), last_camera,
                                         tracklets, centroid; merged_into / split_from
    {ns}:v1:exemplars:<id>        HASH   features (f32 K x D), attention (f16 K x r x h x w:
                                         the projections), shapes
    {ns}:v1:sightings:<id>        ZSET   "<camera>\\t<track>\\t<start>\\t<end>\\t<crops>" -> start
    {ns}:v1:tracklet:<cam>:<trk>  HASH   identity, camera, track, start, end, member, epoch,
                                         vector (f32 mean exemplar), path, rep_feature and
                                         rep_attention (its representative crop): the fields
                                         of pipeline.matcher.codec.RECORD_FIELDS
    {ns}:v1:tracklets             ZSET   "<cam>:<trk>" -> end time (re-association window)
    {ns}:v1:tracklets_seen        ZSET   "<cam>:<trk>" -> when recorded (unix s): retention
    {ns}:v1:calibration           HASH   the site's learned link threshold (re-association)
    {ns}:v1:sessions              INT    the last run's number: max(last + 1, unix s), so it
                                         never goes back after a restore (unique track ids)
    {ns}:v1:settings              STRING the matcher settings (JSON) of the namespace's runs
    {ns}:v1:model                 HASH   dim, model: the feature size the namespace holds, set
                                         by the first run (a tracklet of another size is refused)
    {ns}:v1:relink_lease          STRING the matcher that runs the periodic re-association
    {ns}:v1:footage:<epoch>       ZSET   first (earliest start) / last (latest end) that the
                                         footage clock has shown any matcher
    {ns}:v1:topology              HASH   "<src>\t<dst>" -> JSON transit times of confident links
    {ns}:v1:camera_links          STRING JSON exit/entry zones and the links between them
                                         (CameraLinks.summary) of the last re-association
    {ns}:v1:events                STREAM new_identity / link / update events
    {ns}:v1:inbox                 STREAM submitted tracklets (consumer group "matchers")
    {ns}:v1:dead                  STREAM inbox entries no matcher could decide, with the error
    {ns}:v1:corrections           STREAM operators' corrections, oldest first: event, kind
                                         (merge|split|confirm|not_same|undo), identity, other,
                                         who, role, time (the review page's audit log)
    {ns}:v1:correction:<event>    HASH   one correction: its log fields, state (applied|undone),
                                         tracklets (JSON: what it said about which tracks) and,
                                         for merge/split, key:<n> / before:<n> (DUMP) /
                                         after:<n> (SHA1 of the DUMP) per touched key and
                                         score:<id> per identity, so undo restores exactly
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    namespace: str = "reid"

    @property
    def prefix(self) -> str:
        return f"{{{self.namespace}}}:v1"

    @property
    def version(self) -> str:
        return f"{self.prefix}:version"

    @property
    def identities(self) -> str:
        return f"{self.prefix}:identities"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def tracklets(self) -> str:
        return f"{self.prefix}:tracklets"

    @property
    def tracklets_seen(self) -> str:
        return f"{self.prefix}:tracklets_seen"

    @property
    def calibration(self) -> str:
        return f"{self.prefix}:calibration"

    @property
    def sessions(self) -> str:
        return f"{self.prefix}:sessions"

    @property
    def settings(self) -> str:
        return f"{self.prefix}:settings"

    @property
    def model(self) -> str:
        return f"{self.prefix}:model"

    @property
    def relink_lease(self) -> str:
        return f"{self.prefix}:relink_lease"

    @property
    def camera_links(self) -> str:
        return f"{self.prefix}:camera_links"

    @property
    def topology(self) -> str:
        return f"{self.prefix}:topology"

    @property
    def inbox(self) -> str:
        return f"{self.prefix}:inbox"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def corrections(self) -> str:
        return f"{self.prefix}:corrections"

    def correction(self, event: str) -> str:
        return f"{self.prefix}:correction:{event}"

    def footage(self, epoch: str) -> str:
        return f"{self.prefix}:footage:{epoch}"

    def identity(self, identity: str) -> str:
        return f"{self.prefix}:identity:{identity}"

    def exemplars(self, identity: str) -> str:
        return f"{self.prefix}:exemplars:{identity}"

    def sightings(self, identity: str) -> str:
        return f"{self.prefix}:sightings:{identity}"

    def tracklet(self, camera_id: str, track_id: int) -> str:
        return f"{self.prefix}:tracklet:{camera_id}:{track_id}"

    def pattern(self) -> str:
        """Glob of every key (for SCAN-based cleanup in tests and tools; never KEYS)."""
        return f"{self.prefix}:*"
