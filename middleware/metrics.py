"""GET /metrics: the Prometheus scrape, outside the contract, optionally behind a read key."""

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from apikeys import Keyring
from logging_ext import metrics
from problems import ProblemResponse


class MetricsEndpoint:
    def __init__(self, app: ASGIApp, *, keyring: Keyring | None = None) -> None:
        """`keyring`: a read key from it is needed (METRICS_REQUIRE_KEY); None: open."""
        self.app = app
        self.keyring = keyring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        is_scrape = (
            scope["type"] == "http"
            and scope["path"] == metrics.METRICS_PATH
            and scope["method"] in ("GET", "HEAD")
        )
        if not is_scrape:
            await self.app(scope, receive, send)
            return
        if self.keyring and not self.keyring.allows(Headers(scope=scope).get("x-api-key"), "read"):
            response: Response = ProblemResponse(401, "/metrics needs an API key (read).")
        else:
            body, content_type = metrics.exposition()
            response = Response(body, media_type=content_type)
        await response(scope, receive, send)
