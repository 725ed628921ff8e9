"""ASGI middleware that every response passes: request ids, access lines, metrics.

It sits outside connexion's exception handling, so validation 400s, 401s, routing
404s and 405s, 413s and 500s all get an id, an access line and a count.
"""

import ipaddress
import json
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from logging_ext import context, metrics

access_log = structlog.get_logger("users_api.access")
log = structlog.get_logger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Metric labels take these as they are; any other method is OTHER, so clients cannot
# invent new time series (a method is any token the client likes).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def parse_networks(spec: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item.strip()) for item in spec if item.strip())


class RequestLogMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: Iterable[str] = (),
        metrics_path: str = "/metrics",
        metrics_guard: Callable[[dict[str, str]], bool] | None = None,
    ) -> None:
        self.app = app
        self.trusted = parse_networks(trusted_proxies)
        self.metrics_path = metrics_path
        # Given the request headers, may this caller read /metrics? None: anyone may.
        self.metrics_guard = metrics_guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = _headers(scope)
        request_id = context.choose_request_id(headers.get("x-request-id"))
        token = context._request_id.set(request_id)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        response: dict[str, Any] = {"status": 500, "bytes": 0, "started": False}
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["started"] = True
                message["headers"] = [*message.get("headers", ()), id_header]
            elif message["type"] == "http.response.body":
                response["bytes"] += len(message.get("body", b""))
            await send(message)

        is_metrics = scope["path"] == self.metrics_path and scope["method"] in ("GET", "HEAD")
        metrics.IN_FLIGHT.inc()
        try:
            if is_metrics:
                await self._serve_metrics(headers, send_with_id, request_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            # Raised outside connexion's handlers (a middleware of ours): still a problem
            # document, never a traceback.
            log.exception("unhandled exception outside the handlers")
            if not response["started"]:
                await _send_problem(
                    send_with_id,
                    request_id,
                    500,
                    "The server failed to answer; the error is logged with this request id.",
                )
        finally:
            metrics.IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            operation = "metrics" if is_metrics else _operation_id(scope)
            status = response["status"]
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
            metrics.REQUESTS.labels(operation, method, str(status)).inc()
            metrics.LATENCY.labels(operation).observe(elapsed)
            access_log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                operation_id=operation,
                status=status,
                duration_ms=round(elapsed * 1000, 3),
                response_bytes=response["bytes"],
                client=self._client(scope, headers),
                user_agent=headers.get("user-agent"),
            )
            structlog.contextvars.clear_contextvars()
            context._request_id.reset(token)

    def _client(self, scope: Scope, headers: dict[str, str]) -> str | None:
        """The peer, or the first address a trusted proxy forwarded for (right to left)."""
        peer = scope.get("client")
        address: str | None = peer[0] if peer else None
        forwarded = headers.get("x-forwarded-for")
        if not (forwarded and address and self._is_trusted(address)):
            return address
        for hop in reversed([part.strip() for part in forwarded.split(",")]):
            if not self._is_trusted(hop):
                return hop
        return address

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    async def _serve_metrics(self, headers: dict[str, str], send: Send, request_id: str) -> None:
        if self.metrics_guard is not None and not self.metrics_guard(headers):
            await _send_problem(send, request_id, 401, "/metrics needs an API key (read).")
            return
        body, content_type = metrics.exposition()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _headers(scope: Scope) -> dict[str, str]:
    return {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}


def _operation_id(scope: Scope) -> str:
    """The spec's operationId (connexion reports it resolved: handlers.users.get_user)."""
    routing = scope.get("extensions", {}).get("connexion_routing", {})
    resolved: str | None = routing.get("operation_id")
    return resolved.rsplit(".", 1)[-1] if resolved else "unmatched"


async def _send_problem(send: Send, request_id: str, status: int, detail: str) -> None:
    # Self-contained on purpose: this extension must not depend on the app it serves.
    body = json.dumps(
        {
            "type": "about:blank",
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": detail,
            "request_id": request_id,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
