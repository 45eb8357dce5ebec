"""The review page, and the headers every answer of the server carries.

The page is one HTML file with its script and style inline. Its Content-Security-Policy
admits exactly those two blocks (by their SHA-256), requests to this origin, and the
``blob:`` URLs the page makes of the crops, plots and clips it fetches with the token; no
other script, style, plugin, form target or frame. ``X-Frame-Options: DENY`` keeps the page
out of other sites' frames in browsers that predate ``frame-ancestors``, and ``nosniff``
keeps a served crop an image.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from pipeline.query.guard import ASGIApp, Message, Receive, Scope, Send

PAGE = Path(__file__).with_name("static") / "review.html"
NOTICE = "<!--notice-->"  # where the server says how it is guarded
OPEN_NOTICE = (
    '<p id="open-notice" class="banner"><strong>Open server:</strong> it was started with '
    "--no-auth, so no token is needed and anyone who can reach this address sees every "
    "identity, sighting, crop and clip. Nobody can correct identities here (that needs "
    "reid-query serve --token).</p>"
)


def review_page(open_to_anyone: bool) -> str:
    """The page; a server that needs no token says so at its top."""
    return PAGE.read_text().replace(NOTICE, OPEN_NOTICE if open_to_anyone else "", 1)


def _sources(html: str, tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
    digests = (base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in blocks)
    return " ".join(f"'sha256-{d}'" for d in digests) or "'none'"


def content_security_policy(html: str) -> str:
    """What ``html`` (the page) needs, and nothing else."""
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {_sources(html, 'script')}",
            f"style-src {_sources(html, 'style')}",
            "img-src 'self' blob:",
            "media-src blob:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


class SecurityHeaders:
    """Adds the page's Content-Security-Policy, ``X-Frame-Options: DENY`` and
    ``X-Content-Type-Options: nosniff`` to every HTTP answer (errors included)."""

    def __init__(self, app: ASGIApp, policy: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", policy.encode()),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *self.headers]
            await send(message)

        await self.app(scope, receive, with_headers)
