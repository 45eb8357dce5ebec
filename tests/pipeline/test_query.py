"""reid-query: service, CLI, HTTP API (auth, limits, uploads) and the page in Chromium."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pipeline.matcher import IdentityReader, Matcher, Tracklet
from pipeline.query.api import create_app
from pipeline.query.cli import app as cli
from pipeline.query.service import QueryService
from reid.runtime import Embeddings

pytestmark = pytest.mark.redis


class ColourEmbedder:
    """A real, if simple, embedder: the normalised mean colour of the crop (3-d)."""

    name = "colour"
    input_size = (64, 32)

    def embed(self, crops):  # noqa: ANN001, ANN201
        means = np.stack([c.reshape(-1, 3).mean(axis=0) for c in crops]).astype(np.float32)
        return Embeddings(means / np.linalg.norm(means, axis=1, keepdims=True), None)


def _crop(tmp_path: Path, name: str, colour: tuple[int, int, int]) -> str:
    path = tmp_path / "crops" / f"{name}.jpg"
    path.parent.mkdir(exist_ok=True)
    cv2.imwrite(str(path), np.full((64, 32, 3), colour, np.uint8))
    return str(path)


@pytest.fixture
def populated(redis_url: str, namespace: str, tmp_path: Path) -> tuple[Matcher, dict, Path]:
    matcher = Matcher(redis_url, namespace)
    embedder = ColourEmbedder()
    people = {"red": (20, 20, 230), "blue": (230, 20, 20)}
    ids = {}
    for n, (name, colour) in enumerate(people.items()):
        crop = _crop(tmp_path, f"{name}_a", colour)
        feats = embedder.embed([cv2.imread(crop)]).features
        ids[name] = matcher.submit(
            Tracklet("cam1", n, 10.0 * n, 10.0 * n + 5, feats, crops=(crop,))
        )
        crop_b = _crop(tmp_path, f"{name}_b", colour)
        matcher.submit(Tracklet("cam2", n, 10.0 * n + 20, 10.0 * n + 25, feats, crops=(crop_b,)))
    return matcher, ids, tmp_path


def test_http_api_answers_and_guards(populated) -> None:
    matcher, ids, root = populated
    service = QueryService(matcher, ColourEmbedder())
    client = TestClient(
        create_app(service, token="s3cret", max_upload_bytes=50_000, crops_root=root)
    )
    auth = {"Authorization": "Bearer s3cret"}
    assert client.get("/api/identities").status_code == 401
    assert (
        client.get("/api/identities", headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    listing = client.get("/api/identities", headers=auth).json()
    assert {r["identity"] for r in listing} == set(ids.values())
    assert all(r["cameras"] == ["cam1", "cam2"] for r in listing)
    view = client.get(f"/api/identities/{ids['red']}", params={"token": "s3cret"}).json()
    assert [s["camera_id"] for s in view["trajectory"]] == ["cam1", "cam2"]
    assert client.get("/api/tracks/cam2/1", headers=auth).json()["identity"] == ids["blue"]
    assert client.get("/api/tracks/cam9/1", headers=auth).status_code == 404
    assert client.get("/api/identities?limit=0", headers=auth).status_code == 422
    assert client.get("/api/tracks/cam1/abc", headers=auth).status_code == 422
    ok, jpeg = cv2.imencode(".jpg", np.full((80, 40, 3), (25, 25, 220), np.uint8))
    hits = client.post("/api/search", headers=auth, files={"image": ("p.jpg", jpeg.tobytes())})
    assert hits.status_code == 200 and hits.json()[0]["identity"] == ids["red"]
    big = client.post("/api/search", headers=auth, files={"image": ("p.jpg", b"x" * 60_000)})
    assert big.status_code == 413
    junk = client.post("/api/search", headers=auth, files={"image": ("p.jpg", b"not an image")})
    assert junk.status_code == 422 and "not a readable image" in junk.json()["detail"]
    crop = view["trajectory"][0]["crops"][0]
    assert client.get("/api/crop", params={"path": crop}, headers=auth).status_code == 200
    escape = client.get("/api/crop", params={"path": "/etc/passwd"}, headers=auth)
    assert escape.status_code == 404


def test_cli_tables_and_json(populated, redis_url: str, namespace: str) -> None:
    _, ids, _ = populated
    runner = CliRunner()
    common = ["--redis", redis_url, "--namespace", namespace]
    listing = runner.invoke(cli, ["list", *common, "--json"])
    assert listing.exit_code == 0 and len(json.loads(listing.stdout)) == 2
    view = runner.invoke(cli, ["track", "cam1", "0", *common, "--json"])
    assert json.loads(view.stdout)["identity"] == ids["red"]
    table = runner.invoke(cli, ["identity", ids["blue"], *common])
    assert table.exit_code == 0 and "cam1 -> cam2" in table.stdout
    missing = runner.invoke(cli, ["identity", "nobody", *common])
    assert missing.exit_code == 2 and "unknown identity" in missing.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_web_page_renders_identities_in_chromium(populated) -> None:
    matcher, ids, root = populated
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(QueryService(matcher), token="t0k", crops_root=root),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        dom = subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--virtual-time-budget=5000",
                "--dump-dom",
                f"http://127.0.0.1:{port}/?token=t0k",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    finally:
        server.should_exit = True
        thread.join(10)
    assert "2 identities" in dom
    for identity in ids.values():
        assert f'data-identity="{identity}"' in dom
    assert "cam1 → cam2" in dom


def test_queries_read_without_the_candidate_index(populated, redis_url: str) -> None:
    """reid-query reads identities through the read model; only search by image builds the
    matcher's index (and then answers like the matcher would)."""
    matcher, ids, root = populated
    service = QueryService(IdentityReader(redis_url, matcher.keys.namespace), ColourEmbedder())
    assert service.identity(ids["red"]).as_dict()["cameras"] == ["cam1", "cam2"]
    assert {r["identity"] for r in service.list()} == set(ids.values())
    assert service._matcher is None  # nothing built so far
    hits = service.search_image(cv2.imread(_crop(root, "query", (20, 20, 230))), k=1)
    assert hits[0]["identity"] == ids["red"] and service._matcher is not None
