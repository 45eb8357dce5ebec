"""Where did a person go? Answers from the matcher's state, for the CLI, API and web page."""

from __future__ import annotations

import io
import threading
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from pipeline.matcher import IdentityReader, Sighting
from pipeline.matcher.codec import unpack
from pipeline.matcher.gallery import Gallery
from pipeline.query.gallery import gallery_page, summary, trajectories
from reid.runtime import Embedder

Rows = list[dict[str, Any]]  # gallery rows (``list`` is also a method of QueryService)
Hits = list[tuple[str, float]]

# a person crop is far smaller; a 16-megapixel frame still decodes in about 48 MB
MAX_IMAGE_PIXELS = 4096 * 4096


class QueryError(ValueError):
    """A query names something unknown or gives unusable input."""


def decode_upload(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A BGR image from encoded bytes; its size is read from the header first, so a
    decompression bomb (a few hundred KB claiming 50,000 x 50,000 pixels) is refused
    before a single pixel is decoded."""
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Image.DecompressionBombError as exc:  # Pillow's own, far higher, limit
        raise QueryError(f"the upload has too many pixels: {exc}") from None
    except Exception:  # noqa: BLE001 - Pillow's errors, and whatever a plugin (or a patch of
        # Image.open, as ultralytics installs in processes that import it) raises instead
        raise QueryError("the upload is not a readable image (JPEG, PNG, ...)") from None
    if width * height > max_pixels:
        raise QueryError(
            f"the upload is {width}x{height} pixels; at most {max_pixels:,} are accepted"
        )
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise QueryError("the upload is not a readable image (JPEG, PNG, ...)")
    return image


@dataclass(frozen=True)
class IdentityView:
    identity: str
    info: dict[str, str]
    trajectory: tuple[Sighting, ...]

    def as_dict(self) -> dict[str, Any]:
        """``merged_from`` (the id asked for) is present when that id was merged into this."""
        cameras = list(dict.fromkeys(s.camera_id for s in self.trajectory))
        merged = {"merged_from": self.info["merged_from"]} if "merged_from" in self.info else {}
        return {
            "identity": self.identity,
            **merged,
            "info": self.info,
            "cameras": cameras,
            "trajectory": [asdict(s) for s in self.trajectory],
        }


class QueryService:
    """Read-only queries over the matcher's Redis state.

    Args:
        reader: connected to the pipeline's Redis and namespace. Only search by image needs
            the candidate index; it is built then.
        embedder: the pipeline's model, for search by image (None disables it).
    """

    def __init__(self, reader: IdentityReader, embedder: Embedder | None = None) -> None:
        self.reader, self.embedder = reader, embedder
        self._gallery: Gallery | None = None
        self._building = threading.Lock()  # API searches run in worker threads

    @property
    def gallery(self) -> Gallery:
        """The candidate index over the same state, with the namespace's stored settings
        (built on first use: search by image)."""
        with self._building:
            if self._gallery is None:
                store = self.reader.store
                self._gallery = Gallery(store, store.configured())
        return self._gallery

    def identity(self, identity: str) -> IdentityView:
        """The identity's record; an id merged away by re-association answers with the
        identity it survives as (``info["merged_from"]`` names the id asked for)."""
        survivor = self.reader.resolve(identity)
        trajectory = self.reader.trajectory(survivor)
        if not trajectory:
            raise QueryError(f"unknown identity {identity!r} (never seen, or expired)")
        info = self.reader.identity_info(survivor)
        if survivor != identity:
            info["merged_from"] = identity
        return IdentityView(survivor, info, tuple(trajectory))

    def track(self, camera_id: str, track_id: int) -> IdentityView:
        identity = self.reader.identity_of(camera_id, track_id)
        if identity is None:
            raise QueryError(
                f"track {track_id} of camera {camera_id!r} has no identity "
                "(unknown, too short to summarise, or expired)"
            )
        return self.identity(identity)

    def sighting(self, camera_id: str, track_id: int) -> Sighting:
        """The sighting of local track ``track_id`` in ``camera_id`` (its crops, times)."""
        identity = self.reader.identity_of(camera_id, track_id)
        for s in self.reader.trajectory(identity) if identity else []:
            if (s.camera_id, s.track_id) == (camera_id, track_id):
                return s
        raise QueryError(f"unknown sighting {camera_id}:{track_id}")

    def list(self, limit: int = 50) -> Rows:
        """The ``limit`` most recently updated identities (gallery rows, unfiltered)."""
        return gallery_page(self.reader, limit=limit)["rows"]

    def _ranked(self, hits: Hits) -> Rows:
        found = trajectories(self.reader, (name for name, _ in hits))
        return [
            summary(name, found[name]) | {"similarity": round(similarity, 4)}
            for name, similarity in hits
            if found[name]
        ]

    def search_image(self, data: bytes | np.ndarray, k: int = 5) -> Rows:
        """Identities that look like the person in ``data`` (an encoded image or BGR array),
        most similar first, as gallery rows with ``similarity``."""
        if self.embedder is None:
            raise QueryError("search by image needs the pipeline's model (--model)")
        image = data if isinstance(data, np.ndarray) else decode_upload(data)
        if image.size == 0:
            raise QueryError("the image is empty")
        features = self.embedder.embed([image]).features
        self._check_dim(features.shape[1], self.embedder.name)
        return self._ranked(self.gallery.similar(features, k))

    def _check_dim(self, dim: int, model: str) -> None:
        """A model whose features are not the size the namespace holds cannot search it."""
        gallery = self.gallery
        self.reader.store.call(gallery.sync, ())  # the recorded size, and the indexed one
        held = gallery.feature_dim or gallery.index.dim
        if held is not None and held != dim:
            raise QueryError(
                f"the model {model!r} gives {dim}-d features but namespace "
                f"{self.reader.keys.namespace!r} holds {held}-d ones: search it with the "
                "model its runs used"
            )

    def similar(self, identity: str, k: int = 5) -> Rows:
        """The ``k`` identities nearest to ``identity`` (its exemplars against theirs), as
        gallery rows with ``similarity``: candidates for "same person"."""
        survivor = self.reader.resolve(identity)
        raw = self.reader.store.call(
            self.reader.redis.hmget,
            self.reader.keys.exemplars(survivor),
            "features",
            "features_meta",
        )
        if raw[0] is None:
            raise QueryError(f"unknown identity {identity!r} (never seen, or expired)")
        hits = self.gallery.similar(unpack(raw[0], raw[1]), k + 1)
        return self._ranked([(name, sim) for name, sim in hits if name != survivor][:k])
