"""The one record codec: every value the matcher keeps in Redis (or sends through its inbox)
is written and read here, in Python and in the arguments the Lua scripts receive.

- arrays: little-endian bytes with a JSON ``[dtype, shape]`` meta field beside them;
- a *sighting* (a member of ``sightings:<id>``): ``camera \\t track \\t start \\t end \\t crops``;
- an *exemplar set* (``exemplars:<id>``): ``features`` (f32 K x D) and, when the model
  exports attention, ``attention`` (f16 K x r x h x w projections of the same crops);
- a *tracklet record* (``tracklet:<cam>:<trk>``): :data:`RECORD_FIELDS`;
- an *inbox entry*: a submitted tracklet (:func:`encode_tracklet` / :func:`decode_tracklet`),
  parsed with bounded sizes (a poison entry is a :class:`TrackletError`, never a crash).

Tracklets are named ``camera:track`` (:func:`track_ref`) everywhere in Redis.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from redis.typing import EncodableT, FieldT

from pipeline.matcher.types import Sighting, Tracklet, TrackletError

MAX_CROPS_BYTES = 256 * 1024  # the crop references of one inbox entry
MAX_META_BYTES = 256
DTYPES = {"float16", "float32", "float64"}
RECORD_FIELDS = (
    "identity",
    "start",
    "end",
    "epoch",
    "vector",
    "vector_meta",
    "path",
    "path_meta",
    "rep_feature",
    "rep_feature_meta",
    "rep_attention",
    "rep_attention_meta",
)
Fields = dict[FieldT, EncodableT]


def pack(array: np.ndarray, dtype: str) -> tuple[bytes, str]:
    data = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    return data.tobytes(), json.dumps([dtype, list(data.shape)])


def unpack(data: bytes, meta: bytes | str) -> np.ndarray:
    """The array ``pack`` wrote; a :class:`TrackletError` for anything else."""
    if len(meta) > MAX_META_BYTES:
        raise TrackletError(f"array meta of {len(meta)} bytes (at most {MAX_META_BYTES})")
    try:
        dtype, shape = json.loads(meta)
        if dtype not in DTYPES or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ValueError(f"not an array meta: {meta!r}")
        return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
    except (ValueError, TypeError) as exc:
        raise TrackletError(f"malformed array ({exc})") from exc


def track_ref(camera_id: str, track_id: int) -> str:
    return f"{camera_id}:{track_id}"


def parse_ref(ref: bytes | str) -> tuple[str, int]:
    camera, track = (ref.decode() if isinstance(ref, bytes) else ref).rsplit(":", 1)
    return camera, int(track)


def identity_id(seed: str) -> str:
    """An identity id derived from ``seed`` (deterministic: replays found the same ids)."""
    return "p" + hashlib.sha1(seed.encode()).hexdigest()[:12]


# -- sightings -----------------------------------------------------------------------------
def encode_sighting(t: Tracklet) -> str:
    return "\t".join(
        [t.camera_id, str(t.track_id), repr(t.start), repr(t.end), json.dumps(list(t.crops))]
    )


def decode_sighting(identity: str, member: bytes | str) -> Sighting:
    text = member.decode() if isinstance(member, bytes) else member
    camera, track, start, end, crops = text.split("\t", 4)
    return Sighting(identity, camera, int(track), float(start), float(end), _crops(crops))


def _crops(raw: bytes | str) -> tuple[str, ...]:
    """A JSON list of crop references, refused past :data:`MAX_CROPS_BYTES` or nested."""
    if len(raw) > MAX_CROPS_BYTES:
        raise TrackletError(f"crops field of {len(raw)} bytes (at most {MAX_CROPS_BYTES})")
    try:
        crops = json.loads(raw)
    except RecursionError as exc:
        raise TrackletError("crops field nests too deeply") from exc
    if not isinstance(crops, list) or not all(isinstance(c, str) for c in crops):
        raise TrackletError("crops must be a JSON list of strings")
    return tuple(crops)


# -- exemplar sets -------------------------------------------------------------------------
@dataclass
class Exemplars:
    features: np.ndarray  # [M, D] float32
    projections: np.ndarray | None  # [M, r, h, w] (the same crops), or None


def encode_exemplars(exemplars: Exemplars) -> tuple[bytes, str, bytes, str]:
    """``features, features_meta, attention, attention_meta`` (attention empty when none),
    as the exemplar hash and the Lua scripts hold them."""
    features, features_meta = pack(exemplars.features, "float32")
    if exemplars.projections is None:
        return features, features_meta, b"", ""
    return features, features_meta, *pack(exemplars.projections, "float16")


def decode_exemplars(raw: dict[bytes, bytes]) -> Exemplars | None:
    """An ``exemplars:<id>`` hash (None when it is gone: expired or merged away)."""
    if not raw:
        return None
    projections = (
        unpack(raw[b"attention"], raw[b"attention_meta"]).astype(np.float32)
        if raw.get(b"attention")
        else None
    )
    return Exemplars(unpack(raw[b"features"], raw[b"features_meta"]), projections)


def centroid(features: np.ndarray) -> tuple[bytes, str]:
    """The identity's index entry: its exemplars' normalised mean."""
    mean = features.mean(axis=0)
    return pack(mean / max(float(np.linalg.norm(mean)), 1e-12), "float32")


# -- tracklet records ----------------------------------------------------------------------
@dataclass(frozen=True)
class Recorded:
    """A tracklet as the matcher recorded it: its identity, mean exemplar vector (empty when
    recorded without one), path, and representative crop (feature and projections) when the
    model exports attention."""

    camera_id: str
    track_id: int
    start: float
    end: float
    identity: str
    vector: np.ndarray
    path: np.ndarray | None = None
    rep_feature: np.ndarray | None = None
    rep_attention: np.ndarray | None = None
    epoch: str = ""

    @property
    def ref(self) -> str:
        return track_ref(self.camera_id, self.track_id)

    def as_tracklet(self) -> Tracklet:
        return Tracklet(
            self.camera_id,
            self.track_id,
            self.start,
            self.end,
            self.vector[None],
            path=self.path,
            epoch=self.epoch,
        )


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode()


def decode_record(ref: bytes | str, row: Sequence[bytes | None]) -> Recorded | None:
    """A tracklet record read with ``HMGET`` of :data:`RECORD_FIELDS` (None when expired)."""
    values = dict(zip(RECORD_FIELDS, row, strict=True))
    if values["identity"] is None or values["start"] is None or values["end"] is None:
        return None

    def array(name: str, dtype: type) -> np.ndarray | None:
        data, meta = values[name], values[f"{name}_meta"]
        return unpack(data, meta).astype(dtype) if data and meta else None

    vector = array("vector", np.float32)
    camera, track = parse_ref(ref)
    return Recorded(
        camera,
        track,
        float(values["start"]),
        float(values["end"]),
        _text(values["identity"]),
        np.empty(0, np.float32) if vector is None else vector,
        array("path", np.float64),
        array("rep_feature", np.float32),
        array("rep_attention", np.float32),
        _text(values["epoch"]),
    )


def representative(tracklet: Tracklet) -> tuple[np.ndarray, np.ndarray] | None:
    """The tracklet's crop closest to its mean: (feature, projections); None without
    attention. What re-association scores attention on, and an identity's exemplar after a
    rewrite."""
    if tracklet.projections is None:
        return None
    pick = int(np.argmax(tracklet.features @ tracklet.features.mean(axis=0)))
    return tracklet.features[pick], tracklet.projections[pick]


def mean_vector(tracklet: Tracklet) -> np.ndarray:
    """The tracklet's L2-normalised mean exemplar feature."""
    mean = tracklet.features.mean(axis=0).astype(np.float32)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def record_args(tracklet: Tracklet) -> list[EncodableT]:
    """What commit.lua stores in the tracklet record beside the decision (ARGV 19..28)."""
    rep = representative(tracklet)
    return [
        *pack(mean_vector(tracklet), "float32"),
        track_ref(tracklet.camera_id, tracklet.track_id),
        *(pack(tracklet.path, "float32") if tracklet.path is not None else (b"", "")),
        *(pack(rep[0], "float32") if rep is not None else (b"", "")),
        *(pack(rep[1], "float16") if rep is not None else (b"", "")),
        tracklet.epoch,
    ]


# -- inbox entries -------------------------------------------------------------------------
def encode_tracklet(t: Tracklet) -> Fields:
    """The fields of the tracklet's inbox entry (an ``XADD``)."""
    features, features_meta = pack(t.features, "float32")
    fields: Fields = {
        "camera": t.camera_id,
        "track": str(t.track_id),
        "start": repr(t.start),
        "end": repr(t.end),
        "features": features,
        "features_meta": features_meta,
        "crops": json.dumps(list(t.crops)),
        "epoch": t.epoch,
    }
    if t.projections is not None:
        fields["attention"], fields["attention_meta"] = pack(t.projections, "float16")
    if t.path is not None:
        fields["path"], fields["path_meta"] = pack(t.path, "float64")
    return fields


def decode_tracklet(fields: dict[bytes, bytes]) -> Tracklet:
    """The tracklet of an inbox entry; a malformed entry is a :class:`TrackletError`."""
    try:
        attention = (
            unpack(fields[b"attention"], fields[b"attention_meta"])
            if b"attention" in fields
            else None
        )
        path = unpack(fields[b"path"], fields[b"path_meta"]) if b"path" in fields else None
        return Tracklet(
            fields[b"camera"].decode(),
            int(fields[b"track"]),
            float(fields[b"start"]),
            float(fields[b"end"]),
            unpack(fields[b"features"], fields[b"features_meta"]),
            attention,
            _crops(fields[b"crops"]),
            path,
            fields.get(b"epoch", b"").decode(),
        )
    except TrackletError:
        raise
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise TrackletError(f"malformed inbox entry ({type(exc).__name__}: {exc})") from exc
