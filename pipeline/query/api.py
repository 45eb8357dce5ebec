"""HTTP API and web page over :class:`QueryService` (``reid-query serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, Response

from pipeline.matcher.corrections import Actor, Corrector
from pipeline.query.crops import NoSuchCrop, crop_file
from pipeline.query.guard import MULTIPART_OVERHEAD, Guard
from pipeline.query.page import SecurityHeaders, content_security_policy, review_page
from pipeline.query.review_api import review_routes
from pipeline.query.service import QueryError, QueryService
from pipeline.query.topology import topology_png, topology_rows


def create_app(
    service: QueryService,
    token: str | None = None,
    max_upload_bytes: int = 5 * 1024 * 1024,
    crops_root: str | Path | None = None,
    read_token: str | None = None,
    token_name: str = "operator",
) -> FastAPI:
    """The API and the review page. ``token`` (an operator's, recorded as ``token_name``
    with each correction) or ``read_token`` (views only) is then required as
    ``Authorization: Bearer <token>`` (or ``?token=`` for viewing) on every route but the
    page and /healthz (the OpenAPI schema at /openapi.json too; no Swagger page is served:
    it would load scripts from elsewhere); without ``token`` nobody may correct. Crop
    images and run videos are served only from under ``crops_root``."""
    app = FastAPI(title="reid-pipeline query", version="1", docs_url=None, redoc_url=None)
    tokens = {
        secret: actor
        for secret, actor in (
            (token, Actor(token_name, "operator")),
            (read_token, Actor("viewer", "viewer")),
        )
        if secret
    }
    # token and size are checked from the headers, before any upload is read
    app.add_middleware(Guard, tokens=tokens, max_body=max_upload_bytes + MULTIPART_OVERHEAD)
    html = review_page(open_to_anyone=not tokens)
    app.add_middleware(SecurityHeaders, policy=content_security_policy(html))  # outermost
    root = Path(crops_root).resolve() if crops_root else None
    app.include_router(review_routes(service, Corrector(service.reader), root))

    def answer(fn, *args):  # noqa: ANN001, ANN002, ANN202
        try:
            return fn(*args)
        except QueryError as exc:
            raise HTTPException(404, str(exc)) from exc

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        """Liveness/readiness: Redis answers."""
        try:
            service.reader.redis.ping()
        except Exception as exc:  # any failure means not ready
            raise HTTPException(503, f"Redis unavailable: {exc}") from exc
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        """The review page: the gallery."""
        return html

    @app.get("/identity/{identity}", response_class=HTMLResponse, include_in_schema=False)
    def identity_page(identity: str) -> str:
        """The review page opened on one identity (a deep link). The page itself holds no
        data (it asks the API with the token), so it answers alike for any id."""
        return html

    @app.get("/api/identities")
    def identities(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict]:
        return service.list(limit)

    @app.get("/api/identities/{identity}")
    def identity(identity: str) -> dict:
        return answer(service.identity, identity).as_dict()

    @app.get("/api/tracks/{camera}/{track}")
    def track(camera: str, track: int) -> dict:
        return answer(service.track, camera, track).as_dict()

    @app.get("/api/topology")
    def topology() -> list[dict]:
        """Transit times learned per ordered camera pair (re-association)."""
        return topology_rows(service.reader.topology())

    @app.get("/api/camera-links")
    def camera_links() -> dict:
        """Exit/entry zones per camera and the links between them (``matcher.camera_links``)."""
        return service.reader.camera_links()

    @app.get("/api/topology.png")
    def topology_plot() -> Response:
        samples, links = service.reader.topology(), service.reader.camera_links()
        if not topology_rows(samples) and not links["zones"]:
            raise HTTPException(404, "no transit times learned yet")
        return Response(topology_png(samples, links), media_type="image/png")

    @app.post("/api/search")
    async def search(
        image: Annotated[UploadFile, File()], k: Annotated[int, Query(ge=1, le=100)] = 5
    ) -> list[dict]:
        data = await image.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload larger than {max_upload_bytes} bytes")
        try:  # embedding is CPU/GPU work: off the event loop, so /healthz keeps answering
            return await run_in_threadpool(service.search_image, data, k)
        except QueryError as exc:
            raise HTTPException(422, str(exc)) from exc

    @app.get("/api/crop")
    def crop(path: str) -> FileResponse:
        """A crop image under the crops root that a sighting of the namespace records
        (never events, summaries, videos or other images)."""
        try:
            file, kind = crop_file(service, root, path)
        except NoSuchCrop:
            raise HTTPException(404, "no such crop") from None
        return FileResponse(file, media_type=kind)

    return app
