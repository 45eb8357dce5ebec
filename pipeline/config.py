"""cams.yaml: every setting of a pipeline run, validated; errors name the field and the fix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import redis
from pydantic import Field, field_validator, model_validator

from detectors import DetectorConfig
from detectors.yolo import YoloSettings
from pipeline.matcher import RedisUnavailable
from pipeline.matcher.config import MatcherConfig
from pipeline.matcher.connection import redacted
from pipeline.tracking import ByteTrackSettings, TrackerConfig
from reid.config import ConfigError, Settings, load_yaml_settings


class CameraConfig(Settings):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="unique camera id")
    source: str | int = Field(description="video file, image folder, stream URL or webcam index")
    fps: float | None = Field(None, gt=0, description="frames/s to process (a stride); None: all")
    start_time: float = Field(0.0, description="timestamp of a file's first frame (s)")
    time_offset: float = Field(0.0, description="seconds added to every timestamp")
    crop: tuple[int, int, int, int] | None = Field(None, description="virtual camera [x, y, w, h]")
    live: bool | None = Field(None, description="None: streams and webcams are live")
    max_reconnects: int | None = Field(None, ge=0, description="live sources; None: forever")
    open_timeout_s: float = Field(
        10.0, gt=0, description="streams: longest wait to open, or for a frame, before a retry"
    )
    detections: str | None = Field(None, description="MOT file (detector.kind: precomputed)")

    @field_validator("crop")
    @classmethod
    def _positive_crop(
        cls, v: tuple[int, int, int, int] | None
    ) -> tuple[int, int, int, int] | None:
        if v is not None and (v[0] < 0 or v[1] < 0 or v[2] <= 0 or v[3] <= 0):
            raise ValueError("crop is [x, y, width, height] with x, y >= 0 and positive size")
        return v


class TrackletConfig(Settings):
    best_k: int = Field(4, ge=1, le=16)
    lost_after_s: float = Field(1.0, gt=0)
    finish_after_s: float = Field(3.0, gt=0)
    summary_every_s: float = Field(5.0, gt=0)
    min_boxes: int = Field(3, ge=1)
    min_height: int = Field(48, ge=8)
    min_motion: float = Field(
        0.5,
        ge=0.0,
        description="a track whose centre never moves this many box heights and whose box is "
        "not upright (see min_aspect) is a static object, not a person: it founds no "
        "identity; 0 turns the check off",
    )
    min_aspect: float = Field(1.0, ge=0.0, description="upright: median height/width at least")


class ReidConfig(Settings):
    model: str | None = Field(
        None,
        description="checkpoint (.pt), .onnx or .engine; None: ImageNet MobileNetV2 "
        "features (offline, feature-only matching; train with reid-train for accuracy)",
    )
    backend: Literal["auto", "trt", "ort", "openvino", "torch"] = "auto"
    max_batch: int = Field(32, ge=1)


class RedisConfig(Settings):
    url: str | None = Field(
        None,
        description="redis://, rediss:// or unix:// URL; redis+cluster://host:port for a Redis "
        "Cluster; None: embedded",
    )
    namespace: str = Field("reid", pattern=r"^[A-Za-z0-9_.-]+$")
    retry_budget_s: float = Field(
        60.0,
        ge=0.0,
        description="how long a run rides out a Redis outage before it ends with its outputs "
        "re-associated in memory (a restart of Redis takes seconds)",
    )


@contextmanager
def redis_refusals(url: str | None) -> Iterator[None]:
    """Connecting to Redis, and a run's first writes: a server that refuses a command there
    (a database number it does not have, a read-only replica, a user without the rights)
    is a :class:`RedisUnavailable` naming the URL, not a traceback."""
    try:
        yield
    except redis.ResponseError as exc:
        where = redacted(url) if url else "the embedded Redis"
        raise RedisUnavailable(
            f"Redis at {where} refused: {exc}. Check the database number the URL ends with "
            "(below the server's `databases`, 16 by default) and the user's rights"
        ) from None


class OutputConfig(Settings):
    dir: str = "runs/pipeline"
    video: bool = True
    crops: bool = True
    events: bool = True
    mtmc: bool = True

    def check_folder(self) -> None:
        """A ``dir`` that is a file, or lies under one, cannot be the run's folder."""
        folder = Path(self.dir)
        for path in (folder, *folder.parents):
            if path.exists() and not path.is_dir():
                raise ConfigError(
                    f"outputs.dir (--out) {folder}: {path} is a file, not a folder; give a "
                    "folder for the run's outputs"
                )


class PipelineConfig(Settings):
    cameras: list[CameraConfig] = Field(min_length=1)
    detector: DetectorConfig = YoloSettings()
    tracker: TrackerConfig = ByteTrackSettings()
    tracklets: TrackletConfig = TrackletConfig()
    reid: ReidConfig = ReidConfig()
    matcher: MatcherConfig = MatcherConfig()
    redis: RedisConfig = RedisConfig()
    outputs: OutputConfig = OutputConfig()
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Prometheus; None: off")
    metrics_host: str = Field(
        "127.0.0.1",
        description="address /metrics listens on; 0.0.0.0 lets a Prometheus on another host "
        "(or outside the container) scrape it",
    )

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        ids = [c.id for c in self.cameras]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"camera ids must be unique; repeated: {duplicates}")
        if self.detector.needs_detections:
            missing = [c.id for c in self.cameras if c.detections is None]
            if missing:
                raise ValueError(
                    f"detector.kind {self.detector.kind} needs cameras[].detections for {missing}"
                )
        known = set(ids)
        for rule in self.matcher.topology:
            for cam in (rule.source, rule.target):
                if cam not in known:
                    raise ValueError(f"matcher.topology names unknown camera {cam!r}")
        for pair in self.matcher.overlapping:
            unknown = [cam for cam in pair if cam not in known]
            if unknown:
                raise ValueError(
                    f"matcher.overlapping names unknown camera {unknown[0]!r} (cameras: {ids})"
                )
        return self


def load_pipeline_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """cams.yaml -> :class:`PipelineConfig`; relative source paths are resolved against the
    file's folder when they exist there."""
    try:
        config = load_yaml_settings(path, PipelineConfig, overrides or [])
    except OSError as exc:  # a folder, no permission (a missing file is a ConfigError)
        raise ConfigError(f"{path}: cannot read it as cams.yaml: {exc.strerror}") from None
    base = Path(path).resolve().parent
    cameras = []
    for cam in config.cameras:
        update = {}
        for field_name in ("source", "detections"):
            value = getattr(cam, field_name)
            if isinstance(value, str) and not Path(value).is_absolute() and (base / value).exists():
                update[field_name] = str(base / value)
        cameras.append(cam.model_copy(update=update))
    return config.model_copy(update={"cameras": cameras})
