"""The review page in headless Chromium over a real pipeline run: the gallery, an identity
by deep link (timeline, crops, a playable clip), "same person" merges two identities (the
API and reid-query report it), undo puts them back. Screenshots are kept in the test's tmp
folder."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from pipeline.matcher import IdentityReader
from pipeline.query.api import create_app
from pipeline.query.cli import app as query_cli
from pipeline.query.service import QueryService
from tests.pipeline.browser import CHROMIUM, Chromium
from tests.pipeline.runs import review_scene_run
from tests.pipeline.test_query import serving

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make browser)"),
]

TOKEN = "op-s3cret"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[tuple[Path, str]]:
    """A real pipeline run over a synthetic two-camera scene: its folder and namespace; it
    links nobody (the operator will)."""
    yield from review_scene_run(tmp_path_factory, redis_url, "run", "matcher.link_threshold=0.001")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_review_page_merges_and_undoes_in_chromium(run, redis_url: str, tmp_path: Path) -> None:
    folder, namespace = run
    reader = IdentityReader(redis_url, namespace)
    app = create_app(QueryService(reader), token=TOKEN, crops_root=folder, token_name="tester")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serving(app) as port, Chromium() as browser:
        url = f"http://127.0.0.1:{port}"
        api = httpx.Client(base_url=url, headers=auth, timeout=30)
        gallery = api.get("/api/gallery", params={"limit": 100}).json()
        ids = [r["identity"] for r in gallery["rows"]]
        assert len(ids) >= 3

        browser.goto(f"{url}/?token={TOKEN}")
        browser.wait_for(f"document.querySelectorAll('.card').length === {len(ids)}")
        shown = browser.evaluate(
            "[...document.querySelectorAll('.card')].map(c => c.dataset.identity)"
        )
        assert shown == ids  # in the API's order: most recently updated first
        assert browser.evaluate("location.search") == ""  # the token left the URL
        thumbs = sum(len(r["thumbnails"]) for r in gallery["rows"])
        browser.wait_for(
            "[...document.querySelectorAll('img.thumb')].filter(i => i.naturalWidth > 0).length"
            f" === {thumbs}"
        )
        shot = browser.screenshot(tmp_path / "gallery.png")
        width, height = png_size(shot)
        assert width >= 1200 and height >= 400 and len(shot) > 20_000

        # an identity by deep link, and a neighbour the page offers as the same person
        survivor = ids[0]
        similar = api.get(f"/api/identities/{survivor}/similar").json()
        other = similar[0]["identity"]
        mine = api.get(f"/api/identities/{survivor}").json()
        theirs = api.get(f"/api/identities/{other}").json()
        browser.goto(f"{url}/identity/{survivor}?token={TOKEN}")
        browser.wait_for(
            f"document.querySelectorAll('.sighting').length === {len(mine['trajectory'])}"
        )
        lanes = browser.evaluate(
            "[...document.querySelectorAll('.lane')].map(l => l.dataset.camera)"
        )
        assert lanes == mine["cameras"]
        assert browser.evaluate("document.querySelectorAll('.bar').length") == len(
            mine["trajectory"]
        )
        # its Content-Security-Policy admits the page's own style and script, and no other
        header = "getComputedStyle(document.querySelector('header')).backgroundColor"
        assert browser.evaluate(header) == "rgb(29, 35, 48)"
        assert browser.evaluate("document.querySelector('.bar').style.left").endswith("%")
        browser.evaluate(
            "document.body.append(Object.assign(document.createElement('script'),"
            " {textContent: 'window.injected = true'}))"
        )
        assert browser.evaluate("window.injected === undefined")
        button = f'[data-action="same-person"][data-identity="{other}"]'
        browser.wait_for(f"!!document.querySelector('{button}')")
        browser.wait_for(
            "[...document.querySelectorAll('img.crop')].every(i => i.naturalWidth > 0)"
        )
        # the first sighting's annotated clip plays in the browser
        browser.evaluate("document.querySelector('.sighting button').click()")
        assert (
            browser.wait_for(
                "(v => v && v.readyState >= 1 && v.videoWidth)"
                "(document.querySelector('.sighting video'))"
            )
            > 0
        )
        shot = browser.screenshot(tmp_path / "identity.png")
        width, height = png_size(shot)
        assert width >= 1200 and height >= 600 and len(shot) > 20_000

        # "Same person": the neighbour merges into this identity
        browser.evaluate(f"document.querySelector('{button}').click()")
        together = len(mine["trajectory"]) + len(theirs["trajectory"])
        browser.wait_for(f"document.querySelectorAll('.sighting').length === {together}")
        record = api.get(f"/api/identities/{other}").json()
        assert record["identity"] == survivor and record["merged_from"] == other
        cli = CliRunner().invoke(
            query_cli, ["identity", other, "--redis", redis_url, "--namespace", namespace, "--json"]
        )
        assert json.loads(cli.stdout)["identity"] == survivor
        log = api.get("/api/corrections").json()
        assert [(r["kind"], r["identity"], r["other"], r["who"]) for r in log] == [
            ("merge", other, survivor, "tester")
        ]
        browser.screenshot(tmp_path / "merged.png")

        # undo from the page puts both back as they were
        browser.evaluate("document.getElementById('toast-undo').click()")
        browser.wait_for(
            f"document.querySelectorAll('.sighting').length === {len(mine['trajectory'])}"
        )
        assert api.get(f"/api/identities/{other}").json() == theirs
        assert api.get(f"/api/identities/{survivor}").json()["trajectory"] == mine["trajectory"]
        assert [r["kind"] for r in api.get("/api/corrections").json()] == ["undo", "merge"]
