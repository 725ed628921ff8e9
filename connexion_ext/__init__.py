"""How this service bends connexion 3: every customisation, in one place.

Through connexion's documented extension points:
- `OrjsonJsonifier` (jsonifier=): the API's answers serialised by orjson.
- `SECURITY` (security_map): the API-key check reads the key function's signature once
  per operation, not twice per request (security.py).
- `VALIDATORS` (validator_map): one compiled jsonschema validator per schema, every
  problem reported with its place (worded in messages.py), integers in ASCII digits, a
  query parameter given once, HEAD not checked against GET's schema.
- `MIDDLEWARES` (middlewares=): connexion's own stack, with a Swagger UI middleware that
  API requests skip, and routing that takes any segment for an integer path parameter
  (so a malformed id is a 400 after the key check, not a 404) and never redirects.
- `load_contract()`: the spec, with each path's shared parameters moved into its
  operations (connexion 3.3 appends them again for every middleware that builds one).

Through internals, each listed in connexion_ext/internals.py with the version it was
checked against (a different version refuses to start):
- `customise(app)`: Flask is called in the request's greenlet instead of connexion's
  10-thread pool, each operation's decorator chain is built once, and Flask dispatches
  what connexion routed without matching it again (dispatch.py).
- `operation_id(scope)`: the operationId connexion routed a request to.
- `to_wsgi(app)`: the WSGI face gunicorn's gevent worker calls (see bridge.py).
"""

import copy
from functools import partial
from typing import Any

from connexion import FlaskApp
from connexion.middleware import ConnexionMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.types import Scope

from connexion_ext.bridge import InlineFlask, to_wsgi
from connexion_ext.dispatch import route_with_connexion, routed_to
from connexion_ext.jsonifier import OrjsonJsonifier
from connexion_ext.operations import add_prepared_api
from connexion_ext.routing import RoutingAnySegment
from connexion_ext.security import SECURITY
from connexion_ext.swagger_ui import SwaggerUIOnItsPaths
from connexion_ext.validators import VALIDATORS
from contract import METHODS

# A tuple: connexion's add_middleware inserts into the list it is given.
_OURS = {SwaggerUIMiddleware: SwaggerUIOnItsPaths, RoutingMiddleware: RoutingAnySegment}
MIDDLEWARES = tuple(
    _OURS.get(middleware, middleware) for middleware in ConnexionMiddleware.default_middlewares
)

__all__ = [
    "MIDDLEWARES",
    "SECURITY",
    "VALIDATORS",
    "OrjsonJsonifier",
    "customise",
    "load_contract",
    "operation_id",
    "to_wsgi",
]


def customise(app: FlaskApp) -> None:
    """Call Flask directly in the request's greenlet, build each view once, and let
    Flask dispatch what connexion routed.

    connexion hands each request to Flask through a 10-thread pool (a2wsgi): a gevent
    worker could run only 10 handlers at once, and a handler waiting on the database
    blocked a thread instead of yielding. Call before `add_api`.
    """
    flask_asgi = app._middleware_app
    route_with_connexion(flask_asgi.app)
    flask_asgi.asgi_app = InlineFlask(flask_asgi.app.wsgi_app)
    flask_asgi.add_api = partial(add_prepared_api, flask_asgi.app)


def operation_id(scope: Scope) -> str | None:
    """The operationId connexion routed this request to, as the contract writes it
    (get_user: connexion's own holds the module too, handlers.users.get_user)."""
    resolved: str | None = routed_to(scope).get("operation_id")
    return resolved.rpartition(".")[2] if resolved else None


def load_contract(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of the spec with each path's shared parameters moved into its operations,
    as OpenAPI defines them.

    connexion 3.3 appends a path's parameters to the operation's list in place each time
    one of its middlewares builds the operation, so every request validated `user_id` six
    times. An operation's own parameter wins over a shared one of the same name and `in`.
    """
    spec = copy.deepcopy(spec)
    for item in spec["paths"].values():
        shared = item.pop("parameters", [])
        for method in set(METHODS) & item.keys():
            own = item[method].setdefault("parameters", [])
            named = {_parameter_key(p) for p in own}
            own.extend(p for p in shared if _parameter_key(p) not in named)
    return spec


def _parameter_key(parameter: dict[str, Any]) -> Any:
    return parameter.get("$ref") or (parameter["name"], parameter["in"])
