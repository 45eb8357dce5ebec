"""Arrays to Redis bytes and back (little-endian, shape stored beside)."""

from __future__ import annotations

import json

import numpy as np


def pack(array: np.ndarray, dtype: str) -> tuple[bytes, str]:
    data = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    return data.tobytes(), json.dumps([dtype, list(data.shape)])


def unpack(data: bytes, meta: bytes | str) -> np.ndarray:
    dtype, shape = json.loads(meta)
    return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
