"""ASGI middleware that every response passes: request ids, access lines, metrics.

It sits outside connexion's exception handling, so validation 400s, 401s, routing
404s and 405s, 413s and 500s all get an id, an access line and a count.
"""

import time
from collections.abc import Iterable
from http import HTTPMethod
from typing import Any

import structlog
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connexion_ext import operation_id
from logging_ext import context, metrics
from logging_ext.client import ClientAddress

access_log = structlog.get_logger("users_api.access")

# Metric labels take the standard methods as they are; any other is OTHER, so clients
# cannot invent new time series (a method is any token the client likes).
KNOWN_METHODS = frozenset(HTTPMethod)


class RequestLogMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.client = ClientAddress(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        request_id = context.choose_request_id(headers.get("x-request-id"))
        token = context._request_id.set(request_id)
        # Cleared when each request ends (below), so a connection's next one starts clean.
        structlog.contextvars.bind_contextvars(request_id=request_id)
        response: dict[str, Any] = {"status": 500, "bytes": 0}
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            elif message["type"] == "http.response.body":
                response["bytes"] += len(message.get("body", b""))
            await send(message)

        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics.IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            operation = _operation(scope)
            status = response["status"]
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
            metrics.count_request(operation, method, status, elapsed)
            access_log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                operation_id=operation,
                status=status,
                duration_ms=round(elapsed * 1000, 3),
                response_bytes=response["bytes"],
                client=self.client(scope, headers),
                user_agent=headers.get("user-agent"),
            )
            structlog.contextvars.clear_contextvars()
            context._request_id.reset(token)


def _operation(scope: Scope) -> str:
    """The spec's operationId, "metrics" for the scrape, or "unmatched"."""
    routed = operation_id(scope)
    if routed:
        return routed
    return "metrics" if scope["path"] == metrics.METRICS_PATH else "unmatched"
