"""The review API: every route, its auth (missing token 401, read-only token 403, token in
the URL refused for corrections), clear errors, and concurrent merges over HTTP."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pipeline.matcher import Matcher, Tracklet
from pipeline.query.api import create_app
from pipeline.query.cli import app as cli
from pipeline.query.service import QueryService
from tests.pipeline.people import ColourEmbedder, populate, write_crop
from tests.pipeline.test_query import serving

pytestmark = pytest.mark.redis

OPERATOR = {"Authorization": "Bearer op-s3cret"}
VIEWER = {"Authorization": "Bearer view-s3cret"}


@pytest.fixture
def people(redis_url: str, namespace: str, tmp_path: Path) -> tuple[Matcher, dict, Path]:
    matcher, ids = populate(redis_url, namespace, tmp_path)
    return matcher, ids, tmp_path


def client_for(matcher: Matcher, root: Path, **tokens: str) -> TestClient:
    app = create_app(QueryService(matcher.reader, ColourEmbedder()), crops_root=root, **tokens)
    return TestClient(app)


@pytest.fixture
def client(people) -> TestClient:
    matcher, _, root = people
    return client_for(
        matcher, root, token="op-s3cret", read_token="view-s3cret", token_name="alice"
    )


def test_corrections_need_an_operator_token_in_the_header(people, client) -> None:
    matcher, ids, root = people
    red, blue = ids["red"], ids["blue"]
    merge = f"/api/identities/{red}/merge"
    assert client.post(merge, json={"into": blue}).status_code == 401
    assert (
        client.post(merge, json={"into": blue}, headers={"Authorization": "Bearer x"}).status_code
        == 401
    )
    viewer = client.post(merge, json={"into": blue}, headers=VIEWER)
    assert viewer.status_code == 403 and "may view but not correct" in viewer.json()["detail"]
    in_url = client.post(merge, json={"into": blue}, params={"token": "op-s3cret"})
    assert in_url.status_code == 403 and "Authorization header" in in_url.json()["detail"]
    for path in (
        f"/api/identities/{red}/split",
        f"/api/identities/{red}/confirm",
        f"/api/identities/{red}/not-same",
        "/api/corrections/c0/undo",
    ):
        assert client.post(path, json={}).status_code == 401
        assert client.post(path, json={}, headers=VIEWER).status_code == 403
    # viewing is what a read-only token is for
    for path in ("/api/gallery", "/api/corrections", f"/api/identities/{red}/similar"):
        assert client.get(path, headers=VIEWER).status_code == 200
    assert matcher.reader.resolve(red) == red  # nothing was corrected
    # a server started without an operator token lets nobody correct
    open_app = client_for(matcher, root)
    refused = open_app.post(merge, json={"into": blue})
    assert refused.status_code == 403 and "--token" in refused.json()["detail"]
    assert open_app.get("/api/gallery").status_code == 200


def test_merge_undo_split_confirm_not_same_over_http(
    people, client, redis_url: str, namespace: str
) -> None:
    _, ids, _ = people
    red, blue = ids["red"], ids["blue"]
    merged = client.post(f"/api/identities/{red}/merge", json={"into": blue}, headers=OPERATOR)
    assert merged.status_code == 200
    event = merged.json()["event"]
    fields = ("kind", "identity", "other", "who", "role", "state")
    assert [merged.json()[f] for f in fields] == [
        "merge",
        red,
        blue,
        "alice",
        "operator",
        "applied",
    ]
    record = client.get(f"/api/identities/{red}", headers=VIEWER).json()
    assert record["identity"] == blue and record["merged_from"] == red
    assert len(record["trajectory"]) == 4
    common = ["--redis", redis_url, "--namespace", namespace]
    cli_view = CliRunner().invoke(cli, ["identity", red, *common, "--json"])
    assert cli_view.exit_code == 0
    assert json.loads(cli_view.stdout)["identity"] == blue
    assert json.loads(cli_view.stdout)["merged_from"] == red
    table = CliRunner().invoke(cli, ["identity", red, *common])
    assert f"{red} was merged into {blue}" in table.stdout
    log = client.get("/api/corrections", headers=VIEWER).json()
    assert [(r["kind"], r["who"], r["event"]) for r in log] == [("merge", "alice", event)]
    assert client.get(f"/api/corrections/{event}", headers=VIEWER).json()["state"] == "applied"

    undone = client.post(f"/api/corrections/{event}/undo", headers=OPERATOR)
    assert undone.status_code == 200 and undone.json()["state"] == "undone"
    assert client.get(f"/api/identities/{red}", headers=VIEWER).json()["identity"] == red
    again = client.post(f"/api/corrections/{event}/undo", headers=OPERATOR)
    assert again.status_code == 409 and "already undone" in again.json()["detail"]

    split = client.post(
        f"/api/identities/{red}/split", json={"sightings": ["cam2:0"]}, headers=OPERATOR
    )
    assert split.status_code == 200
    new = split.json()["other"]
    new_view = client.get(f"/api/identities/{new}", headers=VIEWER).json()
    assert [(s["camera_id"], s["track_id"]) for s in new_view["trajectory"]] == [("cam2", 0)]
    assert new_view["info"]["split_from"] == red
    confirm = client.post(f"/api/identities/{blue}/confirm", json={}, headers=OPERATOR)
    assert confirm.status_code == 200 and len(confirm.json()["groups"][0]) == 2
    apart = client.post(f"/api/identities/{red}/not-same", json={"other": new}, headers=OPERATOR)
    assert apart.status_code == 200 and apart.json()["kind"] == "not_same"
    kinds = [r["kind"] for r in client.get("/api/corrections", headers=VIEWER).json()]
    assert kinds == ["not_same", "confirm", "split", "undo", "merge"]


def test_errors_name_the_identity_or_the_field(people, client) -> None:
    _, ids, _ = people
    red, blue = ids["red"], ids["blue"]

    def post(path: str, body: object) -> httpx.Response:
        return client.post(path, json=body, headers=OPERATOR)

    unknown = post("/api/identities/p-nobody/merge", {"into": blue})
    assert unknown.status_code == 404 and "'p-nobody'" in unknown.json()["detail"]
    into_unknown = post(f"/api/identities/{red}/merge", {"into": "p-ghost"})
    assert into_unknown.status_code == 404 and "'p-ghost'" in into_unknown.json()["detail"]
    itself = post(f"/api/identities/{red}/merge", {"into": red})
    assert itself.status_code == 422 and "into itself" in itself.json()["detail"]
    for body, field in (({}, "into"), ({"into": ""}, "into"), ({"into": blue, "x": 1}, "x")):
        bad = post(f"/api/identities/{red}/merge", body)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == field
    empty = post(f"/api/identities/{red}/split", {"sightings": []})
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"][-1] == "sightings"
    malformed = post(f"/api/identities/{red}/split", {"sightings": ["cam1"]})
    assert malformed.status_code == 422 and "sightings" in malformed.json()["detail"][0]["loc"]
    stranger = post(f"/api/identities/{red}/split", {"sightings": ["cam1:1"]})
    assert stranger.status_code == 422 and "'cam1:1' is not a sighting" in stranger.json()["detail"]
    not_json = client.post(f"/api/identities/{red}/merge", content=b"into=x", headers=OPERATOR)
    assert not_json.status_code == 422
    assert client.post("/api/corrections/c-none/undo", headers=OPERATOR).status_code == 404
    assert client.get("/api/corrections/c-none", headers=VIEWER).status_code == 404
    assert client.get("/api/corrections?before=zzz", headers=VIEWER).status_code == 422
    similar = client.get("/api/identities/p-nobody/similar", headers=VIEWER)
    assert similar.status_code == 404 and "'p-nobody'" in similar.json()["detail"]
    cursor = client.get("/api/gallery?cursor=nonsense", headers=VIEWER)
    assert cursor.status_code == 400 and "cursor" in cursor.json()["detail"]
    assert client.get("/api/sightings/cam9/1/clip", headers=VIEWER).status_code == 404
    no_video = client.get("/api/sightings/cam1/0/clip", headers=VIEWER)
    assert no_video.status_code == 404 and "no crops" not in no_video.json()["detail"]
    post(f"/api/identities/{red}/merge", {"into": blue})
    gone = post(f"/api/identities/{red}/split", {"sightings": ["cam1:0"]})
    assert gone.status_code == 409 and f"merged into '{blue}'" in gone.json()["detail"]


def test_concurrent_merges_over_http_one_wins(people) -> None:
    matcher, ids, root = people
    red, blue = ids["red"], ids["blue"]
    app = create_app(QueryService(matcher.reader), token="op-s3cret", crops_root=root)
    statuses: list[int] = []
    start = threading.Barrier(6)
    with serving(app) as port:

        def merge() -> None:
            start.wait()
            response = httpx.post(
                f"http://127.0.0.1:{port}/api/identities/{red}/merge",
                json={"into": blue},
                headers=OPERATOR,
                timeout=60,
            )
            statuses.append(response.status_code)

        threads = [threading.Thread(target=merge) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert sorted(statuses) == [200] + [409] * 5
    refs = sorted(f"{s.camera_id}:{s.track_id}" for s in matcher.reader.trajectory(blue))
    assert refs == ["cam1:0", "cam1:1", "cam2:0", "cam2:1"]


def test_gallery_filters_and_pages(redis_url: str, namespace: str, tmp_path: Path) -> None:
    colours = {f"c{n}": (40 * n % 255, 90, 255 - 30 * n) for n in range(6)}
    matcher, ids = populate(redis_url, namespace, tmp_path, colours)
    embedder = ColourEmbedder()
    lone = write_crop(tmp_path, "lone", (10, 200, 10))
    features = embedder.embed([np.full((64, 32, 3), (10, 200, 10), np.uint8)]).features
    only_cam3 = matcher.submit(Tracklet("cam3", 50, 500.0, 505.0, features, crops=(lone,)))
    client = client_for(matcher, tmp_path, token="op-s3cret")

    def page(**query: object) -> dict:
        response = client.get("/api/gallery", params=query, headers=OPERATOR)
        assert response.status_code == 200, response.text
        return response.json()

    everyone = set(ids.values()) | {only_cam3}
    seen, cursor, updated = [], None, []
    while True:
        body = page(limit=3, **({"cursor": cursor} if cursor else {}))
        seen += [r["identity"] for r in body["rows"]]
        updated += [r["updated"] for r in body["rows"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(everyone) and len(seen) == len(everyone)
    assert updated == sorted(updated, reverse=True)  # most recently updated first
    assert body["total"] == len(everyone)
    multi = page(multi="true")["rows"]
    assert {r["identity"] for r in multi} == set(ids.values())
    assert all(set(r["thumbnails"]) == {"cam1", "cam2"} for r in multi)
    assert all(Path(p).is_file() for r in multi for p in r["thumbnails"].values())
    assert [r["identity"] for r in page(camera="cam3")["rows"]] == [only_cam3]
    # person n is in cam1 at 10n..10n+5 and cam2 at 10n+20..10n+25
    window = page(since=31, until=44)["rows"]
    expected = {ids[f"c{n}"] for n in range(6) if 10 * n <= 44 and 10 * n + 25 >= 31}
    assert {r["identity"] for r in window} == expected
    assert page(camera="cam9")["rows"] == []


def test_similar_identities_and_photo_search_rank_with_thumbnails(people, client) -> None:
    _, ids, root = people
    similar = client.get(f"/api/identities/{ids['red']}/similar", headers=VIEWER).json()
    assert [r["identity"] for r in similar] == [ids["blue"]]
    assert -1.0 <= similar[0]["similarity"] < 0.99 and similar[0]["thumbnails"]
    photo = Path(write_crop(root, "query", (25, 25, 220))).read_bytes()
    hits = client.post("/api/search", files={"image": ("q.jpg", photo)}, headers=VIEWER).json()
    assert [h["identity"] for h in hits] == [ids["red"], ids["blue"]]
    assert hits[0]["similarity"] > hits[1]["similarity"]
    assert set(hits[0]["thumbnails"]) == {"cam1", "cam2"}


def test_pages_are_served_for_any_identity(client) -> None:
    for path in ("/", "/identity/p-anything"):
        page = client.get(path)
        assert page.status_code == 200 and "reid-pipeline review" in page.text


def test_a_correction_through_the_api_keeps_the_sites_retention_and_exemplars(
    people, client
) -> None:
    """The server is started with no cams.yaml: it reads the matcher settings the site's run
    stored in the namespace, so a merge rewrites keys with the site's retention (it used to
    write the default 7 days) and keeps at most the site's exemplar count."""
    from pipeline.matcher import MatcherConfig

    matcher, ids, _ = people
    site = MatcherConfig(retention_s=3600, exemplars_per_identity=1)
    matcher.store.store_settings(site, "the site's run")
    red, blue = ids["red"], ids["blue"]
    merged = client.post(f"/api/identities/{red}/merge", json={"into": blue}, headers=OPERATOR)
    assert merged.status_code == 200, merged.text
    keys = matcher.keys
    for key in (keys.identity(blue), keys.exemplars(blue), keys.sightings(blue)):
        assert 3500 < matcher.redis.ttl(key) <= 3600, key
    features = matcher.redis.hget(keys.exemplars(blue), "features_meta")
    assert json.loads(features)[1][0] == 1  # one exemplar, as the site keeps


def test_a_gallery_cursor_it_did_not_give_out_is_refused_naming_it(client) -> None:
    """``cursor=nan`` used to reach Redis as a range bound: 500."""
    for cursor in ("nan", "nan|p-x", "x", "inf", "1e999|p-x"):
        page = client.get("/api/gallery", params={"cursor": cursor}, headers=VIEWER)
        assert page.status_code == 400, (cursor, page.text)
        assert page.json()["detail"].startswith("cursor: ") and repr(cursor) in page.text
    given = client.get("/api/gallery", params={"limit": 1}, headers=VIEWER).json()["next"]
    assert client.get("/api/gallery", params={"cursor": given}, headers=VIEWER).status_code == 200


def test_photo_search_with_another_models_features_names_both_sizes(people) -> None:
    """A model of another feature size used to fail inside the index: 500."""
    from reid.runtime import load_embedder
    from reid.runtime.fallback import fallback_onnx

    matcher, _, root = people
    model = load_embedder(fallback_onnx())
    api = TestClient(create_app(QueryService(matcher.reader, model), crops_root=root))
    photo = Path(write_crop(root, "query", (25, 25, 220))).read_bytes()
    refused = api.post("/api/search", files={"image": ("q.jpg", photo)})
    dim = model.embed([np.zeros((256, 128, 3), np.uint8)]).features.shape[1]
    assert refused.status_code == 422
    assert f"gives {dim}-d features" in refused.json()["detail"]
    assert "holds 3-d ones" in refused.json()["detail"]


def test_the_api_schema_needs_the_token_and_no_swagger_page_is_served(people, client) -> None:
    """/docs and /openapi.json answered anyone, token or not."""
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/openapi.json", headers=VIEWER).json()["paths"]["/api/gallery"]
    for path in ("/docs", "/redoc"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=VIEWER).status_code == 404
    matcher, _, root = people
    assert client_for(matcher, root).get("/docs").status_code == 404


def test_every_answer_forbids_framing_sniffing_and_other_scripts(client) -> None:
    for response in (
        client.get("/"),
        client.get("/identity/p-x"),
        client.get("/api/gallery", headers=VIEWER),
        client.get("/api/gallery"),  # 401
        client.get("/api/identities/p-nobody", headers=VIEWER),  # 404
    ):
        headers = response.headers
        assert headers["x-frame-options"] == "DENY", response.url
        assert headers["x-content-type-options"] == "nosniff"
        policy = dict(
            p.strip().split(" ", 1) for p in headers["content-security-policy"].split(";")
        )
        assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
        assert policy["connect-src"] == "'self'" and "'unsafe-inline'" not in str(policy)
        assert policy["script-src"].startswith("'sha256-")


def test_an_open_server_says_so_on_its_page(people, client) -> None:
    """``reid-query serve --no-auth`` gave no sign on the page that anyone may look."""
    matcher, _, root = people
    page = client_for(matcher, root).get("/").text
    assert 'id="open-notice"' in page and "no token is needed" in page
    assert "anyone who can reach this address" in page
    assert 'id="open-notice"' not in client.get("/").text
