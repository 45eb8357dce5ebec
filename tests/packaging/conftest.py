"""The real-Redis fixtures of the pipeline tests (one server, a namespace per test)."""

from tests.pipeline.conftest import namespace, redis_url

__all__ = ["namespace", "redis_url"]
