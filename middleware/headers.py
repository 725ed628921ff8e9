"""Headers every response needs, set in one place for all of them.

- `X-Content-Type-Options: nosniff` everywhere; `Cache-Control: no-store` on the API's
  data (it is personal and behind keys: no shared cache may keep it).
- A correct `Allow` on 405s (RFC 9110, section 15.5.6): connexion routes each operation
  as its own starlette route, so a 405 lists only the methods of the first route whose
  path matched (`GET, HEAD` for a POST to a user). The contract knows them all.
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


NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_STORE = (b"cache-control", b"no-store")


class ResponseHeadersMiddleware:
    def __init__(self, app: ASGIApp, spec: dict[str, Any], private_prefix: str = "/v1/") -> None:
        self.app = app
        self.private_prefix = private_prefix
        self.allowed = [
            (path_pattern(path), _allow_header(item)) for path, item in spec["paths"].items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        private = scope["path"].startswith(self.private_prefix)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers.append(NOSNIFF)
                if private:
                    headers.append(NO_STORE)
                if message["status"] == 405:
                    headers = self._with_allow(headers, scope["path"])
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _with_allow(
        self, headers: list[tuple[bytes, bytes]], path: str
    ) -> list[tuple[bytes, bytes]]:
        allow = self._allow(path)
        if not allow:
            return headers
        return [*((k, v) for k, v in headers if k.lower() != b"allow"), (b"allow", allow.encode())]

    def _allow(self, path: str) -> str | None:
        return next((allow for pattern, allow in self.allowed if pattern.match(path)), None)


def _allow_header(path_item: Iterable[str]) -> str:
    methods = [m.upper() for m in path_item if m in ("get", "put", "post", "patch", "delete")]
    if "GET" in methods:
        methods.append("HEAD")
    return ", ".join(methods)
