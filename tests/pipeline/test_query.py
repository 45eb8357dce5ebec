"""reid-query: service, CLI, HTTP API (auth, limits, uploads) and the page in Chromium."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pipeline.matcher import IdentityReader, Matcher
from pipeline.query.api import create_app
from pipeline.query.cli import app as cli
from pipeline.query.service import QueryService
from tests.pipeline.people import ColourEmbedder, populate, write_crop

pytestmark = pytest.mark.redis


@pytest.fixture
def populated(redis_url: str, namespace: str, tmp_path: Path) -> tuple[Matcher, dict, Path]:
    matcher, ids = populate(redis_url, namespace, tmp_path)
    return matcher, ids, tmp_path


def test_http_api_answers_and_guards(populated) -> None:
    matcher, ids, root = populated
    service = QueryService(matcher.reader, ColourEmbedder())
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


def test_photo_search_with_another_model_is_one_clear_error(
    populated, redis_url: str, namespace: str
) -> None:
    """The namespace holds 3-d colour features; the ImageNet model gives others."""
    from reid.runtime.fallback import fallback_onnx

    _, _, root = populated
    photo = write_crop(root, "query", (20, 20, 230))
    result = CliRunner().invoke(
        cli,
        ["image", photo, "--model", str(fallback_onnx()), "--redis", redis_url]
        + ["--namespace", namespace],
    )
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in message, message
    assert re.search(r"gives \d+-d features but namespace '[^']+' holds 3-d ones", message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app) -> Iterator[int]:  # noqa: ANN001
    """``app`` on a real uvicorn server on 127.0.0.1; yields its port."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def raw_request(port: int, head: str, body_chunks: Iterable[bytes] = ()) -> tuple[int, int]:
    """Send ``head`` then body chunks until the server answers; (status, body bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head.encode("latin-1"))
        for chunk in body_chunks:
            if select.select([conn], [], [], 0)[0]:  # answered: stop sending
                break
            try:
                conn.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            sent += len(chunk)
        reply = b""
        while b"\r\n" not in reply and (data := conn.recv(4096)):
            reply += data
    return int(reply.split(b" ")[1]), sent


def test_api_refuses_before_reading_uploads(populated) -> None:
    """No token: 401 from the headers, before a byte of a 200 MB body. A declared size over
    the limit: 413 at once. A chunked body with no declared size: cut off at the limit."""
    matcher, _, root = populated
    app = create_app(
        QueryService(matcher.reader, ColourEmbedder()), token="s3cret", crops_root=root
    )
    head = "POST /api/search HTTP/1.1\r\nHost: x\r\n{}\r\n"
    part = b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n'
    megabytes = itertools.chain([part], (b"\0" * 250_000 for _ in range(800)))
    with serving(app) as port:
        length = "Content-Length: 200000000\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        assert raw_request(port, head.format(length)) == (401, 0)
        auth = "Authorization: Bearer s3cret\r\n"
        assert raw_request(port, head.format(auth + length)) == (413, 0)
        chunked = (
            auth + "Transfer-Encoding: chunked\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        )
        framed = (b"%x\r\n%s\r\n" % (len(c), c) for c in megabytes)
        status, sent = raw_request(port, head.format(chunked), framed)
        assert status == 413 and sent < 20_000_000  # 5 MB limit; socket buffers in flight


def test_api_answers_hostile_input_with_clear_errors(populated) -> None:
    matcher, _, root = populated
    gate = threading.Event()

    class GatedEmbedder(ColourEmbedder):
        """Holds every search until the test opens the gate."""

        def embed(self, crops):  # noqa: ANN001, ANN201
            assert gate.wait(30)
            return super().embed(crops)

    service = QueryService(matcher.reader, GatedEmbedder())
    app = create_app(service, token="s3cret", crops_root=root)
    client = TestClient(app)
    auth = {"Authorization": "Bearer s3cret"}
    gate.set()
    bomb = client.post(
        "/api/search", headers=auth, files={"image": ("b.png", png_claiming(10_000, 10_000))}
    )
    assert bomb.status_code == 422 and "10000x10000 pixels" in bomb.json()["detail"]
    empty = client.post("/api/search", headers=auth, files={"image": ("e.jpg", b"")})
    assert empty.status_code == 422 and "not a readable image" in empty.json()["detail"]
    assert client.get("/api/crop", params={"path": "a\0b"}, headers=auth).status_code == 404
    (root / "crops" / "events.jsonl").write_text("{}")
    notes = client.get(
        "/api/crop", params={"path": str(root / "crops" / "events.jsonl")}, headers=auth
    )
    assert notes.status_code == 404  # only images are served, whatever is under the root
    png = root / "crops" / "p.png"
    cv2.imwrite(str(png), np.zeros((8, 4, 3), np.uint8))
    stray = client.get("/api/crop", params={"path": str(png)}, headers=auth)
    assert stray.status_code == 404  # an image, but no sighting's crop
    unicode = {"Authorization": "Bearer s3crét".encode()}
    assert client.get("/api/identities", headers=unicode).status_code == 401
    assert client.get("/api/identities", params={"token": "s3crét"}).status_code == 401
    # a search in progress does not hold up the event loop: /healthz answers meanwhile
    gate.clear()
    ok, jpeg = cv2.imencode(".jpg", np.full((80, 40, 3), (25, 25, 220), np.uint8))
    with serving(app) as port:
        url = f"http://127.0.0.1:{port}"
        searching = threading.Thread(
            target=httpx.post,
            args=(f"{url}/api/search",),
            kwargs={"headers": auth, "files": {"image": ("p.jpg", jpeg.tobytes())}, "timeout": 60},
        )
        searching.start()
        time.sleep(0.5)
        health = httpx.get(f"{url}/healthz", timeout=5)
        gate.set()
        searching.join(60)
    assert health.status_code == 200


def test_parallel_requests_share_one_service_safely(populated, redis_url: str) -> None:
    """16 clients at once on a real server: listings, records and searches (which build the
    shared candidate index on first use, under a lock) all answer, and answer alike."""
    matcher, ids, root = populated
    service = QueryService(IdentityReader(redis_url, matcher.keys.namespace), ColourEmbedder())
    ok, jpeg = cv2.imencode(".jpg", np.full((80, 40, 3), (25, 25, 220), np.uint8))
    answers: list[tuple[int, object]] = []

    def client(url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for response in (
                http.get("/api/identities"),
                http.get(f"/api/identities/{ids['red']}"),
                http.post("/api/search", files={"image": ("p.jpg", jpeg.tobytes())}),
            ):
                answers.append((response.status_code, response.json()))

    with serving(create_app(service, crops_root=root)) as port:
        threads = [
            threading.Thread(target=client, args=(f"http://127.0.0.1:{port}",)) for _ in range(16)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert len(answers) == 48 and all(status == 200 for status, _ in answers)
    searches = [body for _, body in answers if isinstance(body, list) and "similarity" in body[0]]
    assert len(searches) == 16 and all(s[0]["identity"] == ids["red"] for s in searches)


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` grey pixels, with a few rows of
    data: what a decompression bomb looks like to anything that reads the header first."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (width + 1) * 4)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_web_page_renders_identities_in_chromium(populated) -> None:
    matcher, ids, root = populated
    with serving(create_app(QueryService(matcher.reader), token="t0k", crops_root=root)) as port:
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
    assert service._gallery is None  # nothing built so far
    hits = service.search_image(cv2.imread(write_crop(root, "query", (20, 20, 230))), k=1)
    assert hits[0]["identity"] == ids["red"] and service._gallery is not None


def test_serve_refuses_to_open_the_identities_without_a_token_unless_told() -> None:
    """An empty REID_QUERY_TOKEN used to leave the API open with no word of it."""
    runner = CliRunner()
    empty = runner.invoke(cli, ["serve"], env={"REID_QUERY_TOKEN": ""})
    assert empty.exit_code == 2 and "--no-auth" in empty.output and "empty" in empty.output
    same = runner.invoke(cli, ["serve", "--token", "s3cret", "--read-token", "s3cret"])
    assert same.exit_code == 2 and "same secret" in same.output


@pytest.mark.slow
def test_crops_answer_from_a_server_started_in_another_folder(
    tmp_path: Path, redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run made with a relative --out, served from another folder with --crops-root:
    every crop answers (they were stored relative to the pipeline's folder and resolved
    against the server's, so every one was "missing")."""
    from reid_demo.scene import generate_scene
    from tests.pipeline.runs import run_pipeline

    scene = generate_scene(tmp_path / "scene", people=3, cameras=2, duration=12, seed=3)
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    site.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(site)
    result = run_pipeline(scene, redis_url, Path("runs/today"), namespace)
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(elsewhere)
    reader = IdentityReader(redis_url, namespace)
    api = TestClient(create_app(QueryService(reader), crops_root=site / "runs"))
    crops = [
        crop
        for name, _ in reader.identities(100)
        for sighting in reader.trajectory(name)
        for crop in sighting.crops
    ]
    assert crops and all(api.get("/api/crop", params={"path": c}).status_code == 200 for c in crops)
