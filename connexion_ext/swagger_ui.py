"""connexion's Swagger UI middleware, consulted only for the paths it serves.

connexion 3.3 copies every request's scope and runs it through the Swagger UI router
before the API sees it (5% of a GET by id, measured in process), although only the UI
and the spec are ever found there. This one checks the path first; what the router
serves, and how, stays connexion's. Put in place of connexion's by connexion_ext.
"""

from collections.abc import Iterable, Iterator
from typing import Any

from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from connexion_ext.internals import get_route_path  # what starlette's routers match on


class SwaggerUIOnItsPaths(SwaggerUIMiddleware):  # type: ignore[misc]
    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self.prefixes: tuple[str, ...] = ()

    def add_api(self, *args: Any, **kwargs: Any) -> None:
        super().add_api(*args, **kwargs)
        self.prefixes = tuple(dict.fromkeys(_path_prefixes(self.router.routes)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Routes match the path below the root path (a proxy's SCRIPT_NAME), as starlette does.
        if scope["type"] == "http" and not get_route_path(scope).startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _path_prefixes(routes: Iterable[BaseRoute], above: str = "") -> Iterator[str]:
    """Every path the routes match, or redirect to, starts with one of these (a Mount's
    path stands for whatever it holds; a path parameter or a trailing slash ends one)."""
    for route in routes:
        path = above + getattr(route, "path", "")
        inner = getattr(route, "routes", None)
        if inner:
            yield from _path_prefixes(inner, path)
        else:
            yield path.partition("{")[0].rstrip("/")
