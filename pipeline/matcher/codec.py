"""Arrays to Redis bytes and back (little-endian, shape stored beside)."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from pipeline.matcher.types import Sighting, Tracklet


def pack(array: np.ndarray, dtype: str) -> tuple[bytes, str]:
    data = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    return data.tobytes(), json.dumps([dtype, list(data.shape)])


def unpack(data: bytes, meta: bytes | str) -> np.ndarray:
    dtype, shape = json.loads(meta)
    return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def encode_sighting(t: Tracklet) -> str:
    return "\t".join(
        [t.camera_id, str(t.track_id), repr(t.start), repr(t.end), json.dumps(list(t.crops))]
    )


def decode_sighting(identity: str, member: bytes | str) -> Sighting:
    text = member.decode() if isinstance(member, bytes) else member
    camera, track, start, end, crops = text.split("\t", 4)
    return Sighting(
        identity, camera, int(track), float(start), float(end), tuple(json.loads(crops))
    )


def identity_id(seed: str) -> str:
    """An identity id derived from ``seed`` (deterministic: replays found the same ids)."""
    return "p" + hashlib.sha1(seed.encode()).hexdigest()[:12]
