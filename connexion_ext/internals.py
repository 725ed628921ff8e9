"""Every name this service takes from connexion, a2wsgi, starlette and Flask that they do
not document for use from outside. Nothing else in the project imports such a name; the
attributes connexion_ext's subclasses read from their connexion base classes are listed
here too, with the module that reads them.

Checked against the versions in CHECKED; `check_versions()` (run at import, so at every
start) refuses others with one clear line, and tests/test_connexion_ext.py (the key check:
tests/test_security.py) has a test for each name below that fails if an upgrade changes
what we rely on.

| name                                   | used by            | why                           |
|----------------------------------------|--------------------|-------------------------------|
| FlaskApp._middleware_app               | connexion_ext      | Flask called inline, not in a |
|   .asgi_app, .add_api                  |   .customise       | 10-thread pool (correctness)  |
| FlaskApi, FlaskOperation (.fn: the     | .operations        | each view worked out once     |
|   view), Flask framework, SyncResponse-|                    |   from the spec, not per      |
|   Decorator (connexion's response      |                    |   request (speed: a fifth of  |
|   rules), sanitized, pythonic (argu-   |                    |   a GET); the same names and  |
|   ment names), TYPE_MAP, is_json_mime- |                    |   response rules as connexion |
|   type (connexion.utils)               |                    |                               |
| ParameterValidator(parameters, uri_-   | .validators        | every problem, with its place,|
|   parser, strict_validation, security_-|                    |   read from the scope         |
|   query_params), .validate(scope)      |                    |                               |
| JSONRequestBodyValidator.wrap_receive, | .validators        | every problem, with its       |
|   ._schema, ._required, ._nullable     |                    |   pointer; missing vs null    |
| JSONResponseBodyValidator._scope       | .validators        | HEAD: no body to check        |
| starlette.requests.cookie_parser       | .validators        | cookie parameters as starlette|
|                                        |                    |   reads them                  |
| FlaskOperation._fn (the handler)       | .operations        | views built once (above)      |
| RoutingMiddleware.router (starlette    | .routing           | no trailing-slash redirects   |
|   Router; .redirect_slashes, .routes)  |                    |   (/v1/users/ is a 404)       |
| PATH_PARAMETER_CONVERTERS (starlette   | .routing           | /v1/users/abc: 401, then 400  |
|   names for spec types), RoutingMiddle-|                    |   naming user_id (not a 404)  |
|   ware (registers them in __init__)    |                    |                               |
| ROUTING_CONTEXT (scope extension:      | .dispatch.routed_- | which operation was routed    |
|   api_base_path, operation_id)         |   to (operation_id |                               |
|                                        |   reads it too)    |                               |
| FlaskASGIApp.app: the plain flask.Flask| .dispatch          | Flask dispatches what connex- |
|   it makes (its class becomes Routed-  |   (.operations     |   ion routed, without its own |
|   Flask); FlaskApi.base_path, the rule |   registers the    |   URL match (speed: 6% of a   |
|   each operation's view is registered  |   rules)           |   GET)                        |
|   under; PATH_PARAMETER_CONVERTERS     |                    |                               |
|   (connexion's type -> Flask converter)|                    |                               |
| Flask: RequestContext.url_adapter via  | .dispatch          | url_for binds the adapter on  |
|   flask.globals.request_ctx, what      |                    |   demand; the request gets    |
|   create_url_adapter returning None    |                    |   the rule and view_args its  |
|   skips (match_request), Request.url_- |                    |   match would have set        |
|   rule/.view_args                      |                    |                               |
| ApiKeySecurityHandler._get_verify_func | .security          | the key function's signature  |
|   (func, loc, name, required_scopes):  |                    |   read once, not per request  |
|   connexion documents overriding a     |                    |   (speed: 3% of a GET)        |
|   scheme's handler through security_-  |                    |                               |
|   map and _get_verify_func; the argu-  |                    |                               |
|   ments are the API-key handler's own; |                    |                               |
|   ._accepts_kwarg (connexion's test of |                    |                               |
|   which keywords the function takes)   |                    |                               |
| a2wsgi build_scope (and the scope's    | .bridge            | WSGI <-> ASGI in one greenlet;|
|   "wsgi_environ" it keeps), build_en-  |                    |   Flask gets gunicorn's own   |
|   viron, StatusStringMapping, wsgi_ty- |                    |   environ back                |
|   ping                                 |                    |                               |
"""

from importlib.metadata import version

from a2wsgi.asgi import StatusStringMapping, build_scope
from a2wsgi.wsgi import build_environ
from a2wsgi.wsgi_typing import Environ, StartResponse, WSGIApp
from connexion.apps.flask import FlaskApi, FlaskOperation
from connexion.decorators.parameter import pythonic, sanitized
from connexion.decorators.response import SyncResponseDecorator
from connexion.frameworks.flask import PATH_PARAMETER_CONVERTERS as FLASK_PATH_CONVERTERS
from connexion.frameworks.flask import Flask as FlaskFramework
from connexion.frameworks.starlette import (
    PATH_PARAMETER_CONVERTERS as STARLETTE_PATH_CONVERTERS,
)
from connexion.middleware.abstract import ROUTING_CONTEXT
from connexion.security import ApiKeySecurityHandler
from connexion.utils import TYPE_MAP, is_json_mimetype
from flask.globals import request_ctx
from starlette._utils import get_route_path
from starlette.requests import cookie_parser

CHECKED = {
    "connexion": "3.3.0",
    "a2wsgi": "1.10.10",
    "starlette": "1.10.0",
    "flask": "3.1.3",
    "werkzeug": "3.1.9",
}


class UncheckedVersion(RuntimeError):
    """An installed package is not the version connexion_ext was checked against."""


def check_versions() -> None:
    for package, checked in CHECKED.items():
        installed = version(package)
        if installed != checked:
            raise UncheckedVersion(
                f"{package} {installed} is installed, but connexion_ext relies on internals"
                f" checked against {package} {checked}: run tests/test_connexion_ext.py, then"
                " update connexion_ext/internals.py (see its table)"
            )


check_versions()

__all__ = [
    "CHECKED",
    "FLASK_PATH_CONVERTERS",
    "ROUTING_CONTEXT",
    "STARLETTE_PATH_CONVERTERS",
    "TYPE_MAP",
    "ApiKeySecurityHandler",
    "Environ",
    "FlaskApi",
    "FlaskFramework",
    "FlaskOperation",
    "StartResponse",
    "StatusStringMapping",
    "SyncResponseDecorator",
    "WSGIApp",
    "build_environ",
    "build_scope",
    "check_versions",
    "cookie_parser",
    "get_route_path",
    "is_json_mimetype",
    "pythonic",
    "request_ctx",
    "sanitized",
]
