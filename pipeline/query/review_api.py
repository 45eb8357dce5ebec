"""The review page's API: the gallery, similar identities, clips, and corrections (merge,
split, confirm, not the same person, undo) with their audit log.

Every correction needs an ``operator`` token sent in the ``Authorization`` header; a
``viewer`` token (``reid-query serve --read-token``) sees everything and corrects nothing
(403). Errors name what is wrong: an unknown identity, sighting or correction is 404, a
correction whose expected state is gone (a concurrent correction won) 409, a body that
cannot be applied 422.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from pipeline.matcher.corrections import (
    Actor,
    CorrectionConflict,
    CorrectionError,
    Corrector,
    UnknownTarget,
)
from pipeline.matcher.types import Sighting
from pipeline.query.clips import ClipError, clip, video_of
from pipeline.query.gallery import CursorError, GalleryFilter, gallery_page
from pipeline.query.service import QueryError, QueryService

Identity = Annotated[str, Field(min_length=1, max_length=200)]
Ref = Annotated[str, Field(pattern=r"^[^:\t\n]+:-?\d+$", description="<camera>:<track>")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MergeBody(Body):
    into: Identity


class SplitBody(Body):
    sightings: list[Ref] = Field(min_length=1)


class ConfirmBody(Body):
    sightings: list[Ref] = Field(default_factory=list, description="all when empty")


class NotSameBody(Body):
    other: Identity


def operator(request: Request) -> Actor:
    """The actor of a correction: an operator token, sent in the header."""
    actor = getattr(request.state, "actor", None)
    if actor is None or actor.role != "operator":
        raise HTTPException(
            403,
            "this token may view but not correct"
            if actor is not None and actor.name != "anonymous"
            else "corrections need an operator token (start reid-query serve with --token)",
        )
    if not getattr(request.state, "token_in_header", False):
        raise HTTPException(
            403, "send the token in the Authorization header for corrections, not in the URL"
        )
    return actor


Operator = Annotated[Actor, Depends(operator)]


def corrected(fn, *args) -> dict:  # noqa: ANN001, ANN002
    """Run a correction; its errors as HTTP answers."""
    try:
        return fn(*args).as_dict()
    except UnknownTarget as exc:
        raise HTTPException(404, str(exc)) from exc
    except CorrectionConflict as exc:
        raise HTTPException(409, str(exc)) from exc
    except CorrectionError as exc:
        raise HTTPException(422, str(exc)) from exc


def review_routes(service: QueryService, corrector: Corrector, root: Path | None) -> APIRouter:
    router = APIRouter(prefix="/api")

    def sighting(camera: str, track: int) -> Sighting:
        try:
            return service.sighting(camera, track)
        except QueryError as exc:
            raise HTTPException(404, str(exc)) from exc

    @router.get("/gallery")
    def gallery(
        limit: Annotated[int, Query(ge=1, le=500)] = 48,
        cursor: str | None = None,
        camera: str | None = None,
        since: float | None = None,
        until: float | None = None,
        multi: bool = False,
    ) -> dict:
        """Identities, most recently updated first, with a thumbnail per camera."""
        filters = GalleryFilter(camera or None, since, until, multi)
        try:
            return gallery_page(service.reader, filters, cursor, limit)
        except CursorError as exc:
            raise HTTPException(400, f"cursor: {exc}") from exc

    @router.get("/identities/{identity}/similar")
    async def similar(identity: str, k: Annotated[int, Query(ge=1, le=50)] = 6) -> list[dict]:
        try:  # the first search builds the candidate index: off the event loop
            return await run_in_threadpool(service.similar, identity, k)
        except QueryError as exc:
            raise HTTPException(404, str(exc)) from exc

    @router.get("/sightings/{camera}/{track}/clip")
    async def sighting_clip(camera: str, track: int) -> Response:
        """The sighting's annotated footage, re-encoded as WebM (VP8) for the browser."""
        try:
            data = await run_in_threadpool(clip, sighting(camera, track), root)
        except ClipError as exc:
            raise HTTPException(404, str(exc)) from exc
        return Response(data, media_type="video/webm")

    @router.get("/sightings/{camera}/{track}/video")
    def sighting_video(camera: str, track: int) -> FileResponse:
        """The run's whole annotated video of the camera (HTTP ranges served)."""
        try:
            return FileResponse(video_of(sighting(camera, track), root), media_type="video/mp4")
        except ClipError as exc:
            raise HTTPException(404, str(exc)) from exc

    @router.post("/identities/{identity}/merge")
    def merge(identity: str, body: MergeBody, actor: Operator) -> dict:
        """Move every sighting of ``identity`` into ``body.into``; ``identity`` then resolves
        to it."""
        return corrected(corrector.merge, identity, body.into, actor)

    @router.post("/identities/{identity}/split")
    def split(identity: str, body: SplitBody, actor: Operator) -> dict:
        """Move ``body.sightings`` to a new identity (the answer's ``other``)."""
        return corrected(corrector.split, identity, body.sightings, actor)

    @router.post("/identities/{identity}/confirm")
    def confirm(identity: str, body: ConfirmBody, actor: Operator) -> dict:
        return corrected(corrector.confirm, identity, actor, body.sightings)

    @router.post("/identities/{identity}/not-same")
    def not_same(identity: str, body: NotSameBody, actor: Operator) -> dict:
        return corrected(corrector.not_same, identity, body.other, actor)

    @router.post("/corrections/{event}/undo")
    def undo(event: str, actor: Operator) -> dict:
        """Restore exactly the state before correction ``event`` (409 if what it touched
        changed since)."""
        return corrected(corrector.undo, event, actor)

    @router.get("/corrections")
    def corrections(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: Annotated[str | None, Query(pattern=r"^\d+-\d+$")] = None,
    ) -> list[dict]:
        """The corrections log, newest first (``before``: a log ``id`` to page on from)."""
        return corrector.log(limit, before)

    @router.get("/corrections/{event}")
    def correction(event: str) -> dict:
        return corrected(corrector.get, event)

    return router
