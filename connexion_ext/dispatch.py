"""Flask dispatches what connexion routed, without walking its own URL map again.

By the time Flask sees a request, connexion's router has found its operation and path
parameters, and its middleware has validated them against the spec. Flask then bound
its URL map to the request and matched the path a second time: 6% of a GET. Here a
request connexion routed goes straight to its operation's view, with the path
parameters converted as Flask's converters (connexion's) would: int, float or str by
the parameter's type. A value they would refuse never gets this far (connexion's
validation answers it with a 400); if one did, Flask's routing would take it.

Flask's url_for still works: such a request gets its URL adapter when it asks for one.

Only a path written exactly as the contract's is dispatched this way. connexion's
router also takes a loose spelling (/v1//users for /v1/users); such a request, and
any connexion did not route, goes through Flask's own routing as before, which answers
them as it always did (404).
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import flask
from flask.globals import request_ctx
from flask.wrappers import Request
from werkzeug.routing import MapAdapter

from connexion_ext.internals import ROUTING_CONTEXT, TYPE_MAP, get_route_path
from contract import path_parameters, path_pattern

VIEWS = "connexion_ext.views"  # flask.Flask.extensions: (base path, operation id) -> view
_DISPATCH = "connexion_ext.dispatch"  # in a request's environ: the view to call
Dispatch = tuple[Callable[..., Any], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class RoutedView:
    """One operation's view, and its path as the contract writes it."""

    view: Callable[..., Any]
    path: re.Pattern[str]  # each parameter one path segment
    names: tuple[str, ...]  # the parameters, as Flask names them ("-" as "_")
    converters: tuple[Callable[[str], Any], ...]

    @classmethod
    def of(cls, view: Callable[..., Any], path: str, types: Mapping[str, str]) -> "RoutedView":
        """`path` the whole route, base path included; `types` each parameter's type."""
        names = path_parameters(path)
        return cls(
            view,
            path_pattern(path),
            tuple(name.replace("-", "_") for name in names),
            tuple(TYPE_MAP.get(types.get(name), str) for name in names),
        )

    def arguments(self, path: str) -> dict[str, Any] | None:
        """The view's keyword arguments, if `path` is this route written exactly."""
        matched = self.path.match(path)
        if matched is None:
            return None
        try:
            return {
                name: convert(value)
                for name, convert, value in zip(
                    self.names, self.converters, matched.groups(), strict=True
                )
            }
        except ValueError:  # not what Flask's converter takes: leave it to Flask's routing
            return None


class RoutedFlask(flask.Flask):
    """Flask behind connexion: a request connexion routed skips Flask's URL map."""

    def create_url_adapter(self, request: Request | None) -> MapAdapter | None:
        if request is not None:
            routed = self._routed(request.environ)
            if routed is not None:
                request.environ[_DISPATCH], request.view_args = routed
                return None  # nothing to match: dispatch_request knows the view
        return super().create_url_adapter(request)

    def dispatch_request(self) -> Any:
        request = flask.request._get_current_object()  # type: ignore[attr-defined]
        view = request.environ.get(_DISPATCH)
        if view is None:
            return super().dispatch_request()
        return view(**request.view_args)

    def url_for(self, /, endpoint: str, **values: Any) -> str:
        """Flask's url_for; a request dispatched here gets its URL adapter when it asks."""
        if flask.has_request_context():
            context = request_ctx._get_current_object()  # type: ignore[attr-defined]
            if context.url_adapter is None and _DISPATCH in context.request.environ:
                context.url_adapter = super().create_url_adapter(context.request)
        return super().url_for(endpoint, **values)

    def _routed(self, environ: Mapping[str, Any]) -> Dispatch | None:
        scope = environ.get("asgi.scope")
        if scope is None:
            return None
        routing = scope.get("extensions", {}).get(ROUTING_CONTEXT, {})
        found: RoutedView | None = self.extensions[VIEWS].get(
            (routing.get("api_base_path"), routing.get("operation_id"))
        )
        if found is None:
            return None
        arguments = found.arguments(get_route_path(scope))
        return None if arguments is None else (found.view, arguments)


def route_with_connexion(app: flask.Flask) -> None:
    """Make connexion's Flask app a RoutedFlask (it builds a plain flask.Flask)."""
    app.__class__ = RoutedFlask
    app.extensions.setdefault(VIEWS, {})
