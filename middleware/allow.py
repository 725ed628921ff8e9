"""Correct `Allow` headers on 405 responses (RFC 9110, section 15.5.6).

connexion routes each operation as its own starlette route, so a 405 lists only the
methods of the first route whose path matched (`GET, HEAD` for a POST to a user). The
contract knows every method of a path; this middleware puts that list in the header.
"""

import re
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def path_pattern(template: str) -> re.Pattern[str]:
    """`/v1/users/{user_id}` -> a regex matching one path segment per parameter."""
    parts = re.split(r"(\{[^}/]+\})", template)
    return re.compile(
        "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts) + r"\Z"
    )


class AllowMiddleware:
    def __init__(self, app: ASGIApp, spec: dict[str, Any]) -> None:
        self.app = app
        self.allowed = [
            (path_pattern(path), _allow_header(item)) for path, item in spec["paths"].items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = self._allow(scope["path"])
                if allow:
                    headers = [(k, v) for k, v in message["headers"] if k.lower() != b"allow"]
                    message["headers"] = [*headers, (b"allow", allow.encode())]
            await send(message)

        await self.app(scope, receive, send_with_allow)

    def _allow(self, path: str) -> str | None:
        return next((allow for pattern, allow in self.allowed if pattern.match(path)), None)


def _allow_header(path_item: Iterable[str]) -> str:
    methods = [m.upper() for m in path_item if m in ("get", "put", "post", "patch", "delete")]
    if "GET" in methods:
        methods.append("HEAD")
    return ", ".join(methods)
