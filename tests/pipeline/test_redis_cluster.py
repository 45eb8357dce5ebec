"""The matcher's store on a real Redis Cluster: three primaries started from redis-server on
local ports, the run pointed at one node with a ``redis+cluster://`` URL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from pipeline.matcher.keys import Keys
from pipeline.matcher.store import Store
from pipeline.runner import SESSION_SPAN
from reid_demo.scene import generate_scene
from tests.pipeline.runs import run_pipeline
from tests.pipeline.scenes import same_partition
from tests.pipeline.servers import RedisClusterServers

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    started = RedisClusterServers(tmp_path_factory.mktemp("cluster")).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_scene(
        tmp_path_factory.mktemp("scene"), people=5, cameras=2, duration=30, seed=2
    )


def namespace_on(cluster: RedisClusterServers, node: int) -> str:
    """A namespace whose hash slot belongs to ``node`` (not the node the URL names)."""
    first, last = cluster.slot_range(node)
    n = 0
    while not first <= key_slot(Keys(f"cluster-{n}").version.encode()) <= last:
        n += 1
    return f"cluster-{n}"


def final_identities(out: Path) -> dict[tuple[str, int], str]:
    rows = json.loads((out / "identities.json").read_text())
    return {(r["camera"], r["track"] % SESSION_SPAN): r["identity"] for r in rows}


def test_a_run_on_a_cluster_ends_with_the_identities_of_a_run_on_one_server(
    scene: Path, cluster: RedisClusterServers, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """Same footage, same settings: the identities a run leaves on a Redis Cluster are the
    ones it leaves on a single server, every key of its namespace lives on the primary of
    the namespace's slot, and the admin clear finds them all there."""
    on_cluster = namespace_on(cluster, 2)
    result = run_pipeline(scene, cluster.url, tmp_path / "cluster", on_cluster)
    assert result.exit_code == 0, result.output
    single = run_pipeline(scene, redis_url, tmp_path / "single", namespace)
    assert single.exit_code == 0, single.output
    clustered, expected = (
        final_identities(tmp_path / "cluster"),
        final_identities(tmp_path / "single"),
    )
    assert clustered.keys() == expected.keys()
    tracks = sorted(expected)
    assert len(set(expected.values())) < len(expected)  # some tracks linked: not trivial
    assert same_partition([clustered[t] for t in tracks], [expected[t] for t in tracks])
    pattern = Keys(on_cluster).pattern()
    counts = [
        len(list(redis.Redis(port=node.port).scan_iter(pattern, count=1000)))
        for node in cluster.nodes
    ]
    assert counts[0] == counts[1] == 0 and counts[2] > 0
    assert Store.open(cluster.url, on_cluster).clear() == counts[2]
    assert not list(redis.Redis(port=cluster.nodes[2].port).scan_iter(pattern, count=1000))


def test_a_cluster_url_that_reaches_no_node_is_a_clear_error(tmp_path: Path) -> None:
    result = run_pipeline(
        generate_scene(tmp_path / "scene", people=2, cameras=2, duration=10, seed=0),
        "redis+cluster://127.0.0.1:1",
        tmp_path / "out",
        "nowhere",
    )
    assert result.exit_code != 0
    assert "Redis Cluster" in result.output and "unreachable" in result.output
