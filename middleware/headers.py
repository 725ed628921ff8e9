"""Headers every response needs, set in one place for all of them.

- `X-Content-Type-Options: nosniff` everywhere; `Cache-Control: no-store` on the API's
  data (it is personal and behind keys: no shared cache may keep it).
- A correct `Allow` on 405s (RFC 9110, section 15.5.6): connexion routes each operation
  as its own starlette route, so a 405 lists only the methods of the first route whose
  path matched (`GET, HEAD` for a POST to a user). The contract knows them all.
"""

from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contract import allowed_methods, path_pattern


class ResponseHeadersMiddleware:
    def __init__(self, app: ASGIApp, spec: dict[str, Any], private_prefix: str = "/v1") -> None:
        self.app = app
        self.private_prefix = private_prefix
        self.allowed = [
            (path_pattern(path), ", ".join(allowed_methods(spec, path))) for path in spec["paths"]
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        path = scope["path"]
        private = path == self.private_prefix or path.startswith(f"{self.private_prefix}/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                headers.append("X-Content-Type-Options", "nosniff")
                if private:
                    headers.append("Cache-Control", "no-store")
                allow = self._allow(scope["path"]) if message["status"] == 405 else None
                if allow:
                    headers["Allow"] = allow
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _allow(self, path: str) -> str | None:
        return next((allow for pattern, allow in self.allowed if pattern.match(path)), None)
