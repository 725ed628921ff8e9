"""connexion's routing, with an integer path parameter matched as any one path segment.

connexion routes `{user_id}` (an integer in the spec) with a converter that only matches
digits, so /v1/users/abc matched no route: a 404 "nothing at this path", answered before
the API key was even looked at, while /v1/users/0 got 401 or 400. Here an integer path
parameter matches any one segment; security runs first, then the parameter validator
refuses what is not an integer in range with a 400 naming the parameter. Flask's own
routes keep connexion's converter: only valid ids get that far.

Trailing-slash redirects are off too: an API path the contract does not name
(/v1/users/) is a 404, not a 307 to one it does. (Swagger UI's own router, consulted
before this one, still sends /v1/ui to /v1/ui/.)
"""

from typing import Any

from connexion.middleware.routing import RoutingMiddleware
from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Mount, Router
from starlette.types import ASGIApp

from connexion_ext.internals import STARLETTE_PATH_CONVERTERS


class AnySegment(Convertor[str]):
    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return str(value)


class RoutingAnySegment(RoutingMiddleware):  # type: ignore[misc]
    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)  # registers connexion's converters, process-wide
        register_url_convertor(STARLETTE_PATH_CONVERTERS["integer"], AnySegment())

    def add_api(self, *args: Any, **kwargs: Any) -> None:
        super().add_api(*args, **kwargs)
        # Each API is a Mount of its own router on the top one: there the redirects live.
        for route in self.router.routes:
            if isinstance(route, Mount) and isinstance(route.app, Router):
                route.app.redirect_slashes = False
