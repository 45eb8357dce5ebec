"""The API's front door: token and body size are checked before any body is read.

Each token stands for an :class:`~pipeline.matcher.corrections.Actor` (a name and a role:
``operator`` may correct, ``viewer`` only view). The actor, and whether its token came in
the ``Authorization`` header (never a cookie, so a cross-site request cannot carry it),
go to the route in ``request.state``; corrections accept only header tokens.

FastAPI reads (and spools) a whole multipart upload before it runs a route's dependencies,
so a 200 MB upload without a token used to be read completely before its 401. This ASGI
middleware answers 401 from the headers alone and 413 from Content-Length, and stops a
chunked body (no Content-Length) as soon as it passes the limit.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from starlette.responses import JSONResponse

from pipeline.matcher.corrections import Actor

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file
ANONYMOUS = Actor("anonymous", "viewer")  # no token configured: anyone may view


class BodyTooLarge(Exception):
    pass


def is_public(path: str) -> bool:
    """The page (which holds no data: it asks the API with the token) and the health check;
    everything else, the API and its OpenAPI schema included, needs a token."""
    return path in ("/", "/healthz") or path.startswith("/identity/")


class Guard:
    """``tokens`` (secret -> actor; none: open for viewing) on every route but the page's
    and ``/healthz``, as ``Authorization: Bearer`` or ``?token=``; request bodies at most
    ``max_body`` bytes."""

    def __init__(self, app: ASGIApp, tokens: Mapping[str, Actor], max_body: int) -> None:
        self.app = app
        self.tokens = {secret.encode(): actor for secret, actor in tokens.items()}
        self.max_body = max_body

    def actor(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[Actor | None, bool]:
        """Who the request's token stands for (None: no or a wrong token), and whether the
        token came in the header."""
        header = headers.get(b"authorization", b"")
        in_header = header.startswith(b"Bearer ")
        if not self.tokens:
            return ANONYMOUS, in_header
        if in_header:
            given = header.removeprefix(b"Bearer ").strip()
        else:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = query.get("token", [""])[0].encode()
        # bytes on both sides: a non-ASCII token is a wrong token, not a TypeError
        for secret, actor in self.tokens.items():
            if given and hmac.compare_digest(given, secret):
                return actor, in_header
        return None, in_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        actor, in_header = self.actor(scope, headers)
        if actor is None:
            await JSONResponse({"detail": "missing or wrong token"}, 401)(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["actor"], state["token_in_header"] = actor, in_header
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self.too_large(scope, receive, send)
            return
        received = 0
        overflow = started = False

        async def limited() -> Message:
            nonlocal received, overflow
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                overflow = True
                raise BodyTooLarge
            return message

        async def answering(message: Message) -> None:
            # FastAPI turns an error while reading a form into its own 400: say 413 instead
            nonlocal started
            if overflow:
                if not started and message["type"] == "http.response.start":
                    started = True
                    await self.too_large(scope, receive, send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, answering)
        except BodyTooLarge:
            if not started:
                await self.too_large(scope, receive, send)

    async def too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body larger than {self.max_body} bytes"
        await JSONResponse({"detail": detail}, 413)(scope, receive, send)
