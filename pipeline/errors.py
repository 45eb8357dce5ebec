"""Errors a user can fix (bad config, files, connections), reported without a traceback."""

from detectors import DetectorError
from pipeline.matcher import RedisUnavailable, TrackletError
from pipeline.output_folder import OutputFolderError
from pipeline.sources import SourceError
from reid.config import ConfigError
from reid.models.checkpoint import CheckpointError
from reid.runtime import EmbedderError

USER_ERRORS = (
    ConfigError,
    SourceError,
    DetectorError,
    EmbedderError,
    CheckpointError,
    RedisUnavailable,
    TrackletError,
    OutputFolderError,
    FileNotFoundError,
)
