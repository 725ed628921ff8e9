"""Flask dispatches what connexion routed, without matching its own URL map again.

By the time Flask sees a request, connexion's router has found its operation and its
middleware has validated the parameters against the spec. Flask then bound its URL map
to the request and matched the path a second time: 6% of a GET. Here a request
connexion routed gets what that match would have found, the operation's rule and its
path parameters read by the rule's own converters (connexion's int and float, werkzeug's
for a string), and Flask dispatches it as before: hooks, error handlers, url_for and
request.endpoint see no difference.

Only a path written exactly as the rule takes it is dispatched this way. connexion's
router also takes a loose spelling (/v1//users for /v1/users); such a request, any that
connexion did not route, and every request of an app that routes by host (TRUSTED_HOSTS,
host or subdomain matching) go through Flask's own routing, which answers them as it
always did.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import flask
from flask.wrappers import Request
from werkzeug.routing import BaseConverter, Map, MapAdapter, Rule, ValidationError

from connexion_ext.internals import (
    FLASK_PATH_CONVERTERS,
    ROUTING_CONTEXT,
    get_route_path,
    request_ctx,
)
from contract import path_parameters, path_pattern

RULES = "connexion_ext.rules"  # in flask.Flask.extensions: (base path, operation id) -> rule
_ROUTED = "connexion_ext.routed"  # in a request's environ: dispatched without a URL match


@dataclass(frozen=True, slots=True)
class RoutedRule:
    """One operation's Flask rule, and how to read a path the way the rule would."""

    rule: Rule
    path: re.Pattern[str]
    converters: tuple[tuple[str, BaseConverter], ...]  # (Flask's argument name, converter)

    @classmethod
    def of(cls, rule: Rule, template: str, types: Mapping[str, str], url_map: Map) -> "RoutedRule":
        """`template` the whole path, base path included; `types` each parameter's type,
        as connexion gives them to Flask (integer, number, path, string)."""
        converters = {
            name: url_map.converters[_converter(types.get(name))](url_map)
            for name in path_parameters(template)
        }
        segments = {name: converter.regex for name, converter in converters.items()}
        return cls(
            rule,
            path_pattern(template, segments),
            tuple((name.replace("-", "_"), converter) for name, converter in converters.items()),
        )

    def arguments(self, path: str) -> dict[str, Any] | None:
        """The view's arguments, if the rule takes `path` as it is written."""
        matched = self.path.match(path)
        if matched is None:
            return None
        try:
            return {
                name: converter.to_python(matched.group(f"p{i}"))
                for i, (name, converter) in enumerate(self.converters)
            }
        except ValidationError:  # the converter refuses it: Flask's routing answers
            return None


def _converter(kind: str | None) -> str:
    return str(FLASK_PATH_CONVERTERS.get(kind, "default"))


class RoutedFlask(flask.Flask):
    """Flask behind connexion: a request connexion routed skips Flask's URL map."""

    def create_url_adapter(self, request: Request | None) -> MapAdapter | None:
        if request is not None and self._routes_by_path_alone():
            routed = self._routed(request.environ)
            if routed is not None:
                request.url_rule, request.view_args = routed
                request.environ[_ROUTED] = True
                return None  # nothing left to match
        return super().create_url_adapter(request)

    def url_for(self, /, endpoint: str, **values: Any) -> str:
        """Flask's url_for; a request dispatched here gets its URL adapter when it asks."""
        if flask.has_request_context():
            context = request_ctx._get_current_object()  # type: ignore[attr-defined]
            if context.url_adapter is None and context.request.environ.get(_ROUTED):
                context.url_adapter = super().create_url_adapter(context.request)
        return super().url_for(endpoint, **values)

    def _routes_by_path_alone(self) -> bool:
        return (
            self.config["TRUSTED_HOSTS"] is None
            and not self.subdomain_matching
            and not self.url_map.host_matching
        )

    def _routed(self, environ: Mapping[str, Any]) -> tuple[Rule, dict[str, Any]] | None:
        scope = environ.get("asgi.scope")
        if scope is None:
            return None
        routing = routed_to(scope)
        found: RoutedRule | None = self.extensions[RULES].get(
            (routing.get("api_base_path"), routing.get("operation_id"))
        )
        if found is None:
            return None
        arguments = found.arguments(get_route_path(scope))
        return None if arguments is None else (found.rule, arguments)


def routed_to(scope: Mapping[str, Any]) -> Mapping[str, Any]:
    """What connexion's routing recorded in the scope (api_base_path, operation_id);
    empty for a request it routed nowhere."""
    routing: Mapping[str, Any] = scope.get("extensions", {}).get(ROUTING_CONTEXT, {})
    return routing


def route_with_connexion(app: flask.Flask) -> None:
    """Make connexion's Flask app a RoutedFlask (it builds a plain flask.Flask)."""
    app.__class__ = RoutedFlask
    app.extensions.setdefault(RULES, {})
