"""Each operation's Flask view, worked out once from the spec: arguments in, response out.

connexion 3.3 rebuilds its decorator chain for every request (inspecting the handler's
signature, building a URI parser, asking even a GET for its body and files), then walks
generic code to bind the arguments and to infer the response's media type: together a
fifth of a GET. connexion's middleware has already validated the request against the
spec by then, so a view only has to hand the values over:

- path parameters come from Flask's converters (connexion's, as Flask routes them);
- query parameters are converted by their schema's type, defaults filled in;
- the JSON body is passed as the operation's body argument (`x-body-name`, or `body`);
- connexion's context values (`user`, `token_info`, ...) go to a handler that asks.

A handler's `(body, status, headers)` whose Content-Type names a JSON media type of the
operation becomes a response here; any other answer (a Flask or connexion response, no
body, a media type to infer) goes through connexion's own response rules. Shapes of the
spec these views do not bind (array, object or nullable query parameters, non-JSON
bodies) refuse to start instead of binding them wrongly.
"""

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import flask
from connexion.context import context
from connexion.operations import AbstractOperation

from connexion_ext.dispatch import RULES, RoutedRule
from connexion_ext.internals import (
    TYPE_MAP,
    FlaskApi,
    FlaskFramework,
    FlaskOperation,
    SyncResponseDecorator,
    is_json_mimetype,
    pythonic,
    sanitized,
)


def add_prepared_api(
    flask_app: flask.Flask, specification: Any, *, name: str | None = None, **kwargs: Any
) -> FlaskApi:
    """FlaskASGIApp.add_api, making PreparedOperation views, and telling a RoutedFlask
    which rule each operation connexion routes to has."""
    api = PreparedFlaskApi(specification, **kwargs)
    flask_app.register_blueprint(api.blueprint, **({"name": name} if name else {}))
    rules = flask_app.extensions.setdefault(RULES, {})
    made_here = {id(prepared): prepared for prepared in api.prepared}
    for rule in flask_app.url_map.iter_rules():
        prepared = made_here.get(id(flask_app.view_functions[rule.endpoint]))
        if prepared is None:
            continue
        operation = prepared.operation
        key = (api.base_path, operation.operation_id)
        # Two operations that connexion's routing names alike: Flask's routing tells them apart.
        rules[key] = (
            None
            if key in rules
            else RoutedRule.of(
                rule,
                api.base_path + operation.path,
                operation.get_path_parameter_types(),
                flask_app.url_map,
            )
        )
    return api


class UnsupportedOperation(ValueError):
    """The spec asks connexion_ext's views for a binding they do not do."""


@dataclass(frozen=True, slots=True)
class QueryParameter:
    name: str  # in the query string
    argument: str  # the handler's keyword
    convert: Callable[[str], Any]
    default: Any
    has_default: bool


class Arguments:
    """How one operation's handler gets its keyword arguments."""

    def __init__(self, operation: AbstractOperation, function: Callable[..., Any], name: Any):
        signature = inspect.signature(function)
        takes = {
            p.name
            for p in signature.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        any_keyword = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())

        def wanted(argument: str) -> bool:
            return any_keyword or argument in takes

        parameters = operation.parameters
        # Flask's view arguments (a path parameter's name, "-" as "_"; typed by connexion's
        # converters) -> the handler's.
        self.path = {
            key: name(key)
            for key in (_path_key(p, operation) for p in parameters if p["in"] == "path")
        }
        self.query = tuple(
            _query_parameter(p, name(p["name"]), operation)
            for p in parameters
            if p["in"] == "query" and wanted(name(p["name"]))
        )
        self.body: str | None = None
        self.body_default: Any = None
        if operation.is_request_body_defined:
            if not all(is_json_mimetype(media) for media in operation.consumes):
                raise UnsupportedOperation(f"{operation.operation_id}: a body that is not JSON")
            body = name(operation.body_name(None))
            if wanted(body):
                self.body = body
                self.body_default = operation.body_schema().get("default", {})
        bound = set(self.path.values()) | {q.argument for q in self.query} | {self.body}
        # connexion's context (the security layer's `user` and `token_info`), for a
        # handler that takes such a name (or **kwargs); `context_` is the whole of it.
        self.context_names = None if any_keyword else (takes - bound)
        self.whole_context = "context_" in takes

    def __call__(self, view_args: dict[str, Any]) -> dict[str, Any]:
        kwargs = {self.path[key]: value for key, value in view_args.items()}
        if self.query:
            given = flask.request.args
            for q in self.query:
                raw = given.get(q.name)
                if raw is not None:
                    kwargs[q.argument] = q.convert(raw)
                elif q.has_default:
                    kwargs[q.argument] = q.default
        if self.body:
            body = flask.request.get_json(silent=True)
            kwargs[self.body] = copy.deepcopy(self.body_default) if body is None else body
        if self.context_names is None or self.context_names:
            for key, value in context.items():
                if self.context_names is None or key in self.context_names:
                    kwargs[key] = value
        if self.whole_context:
            kwargs["context_"] = context
        return kwargs


def _path_key(parameter: dict[str, Any], operation: AbstractOperation) -> str:
    if parameter.get("schema", parameter).get("type") not in ("integer", "number", "string"):
        raise UnsupportedOperation(
            f"{operation.operation_id}: path parameter {parameter['name']!r} is not a plain"
            " integer, number or string"
        )
    return str(parameter["name"]).replace("-", "_")


def _query_parameter(
    parameter: dict[str, Any], argument: str, operation: AbstractOperation
) -> QueryParameter:
    schema = parameter.get("schema", parameter)
    kind = schema.get("type")
    if kind not in ("integer", "number", "boolean", "string") or schema.get("nullable"):
        raise UnsupportedOperation(
            f"{operation.operation_id}: query parameter {parameter['name']!r} is not a"
            " plain integer, number, boolean or string"
        )
    # OpenAPI 3 keeps the default in the schema; a Swagger 2 parameter is its own schema.
    default, has_default = schema.get("default"), "default" in schema
    return QueryParameter(parameter["name"], argument, TYPE_MAP[kind], default, has_default)


class Answer:
    """A handler's answer as the Flask response connexion would make of it."""

    def __init__(self, operation: AbstractOperation, jsonifier: Any) -> None:
        self.json_media = frozenset(m for m in operation.produces if is_json_mimetype(m))
        self.jsonifier = jsonifier
        self.by_connexion = SyncResponseDecorator(framework=FlaskFramework, jsonifier=jsonifier)(
            _unchanged
        )

    def __call__(self, answer: Any) -> Any:
        if type(answer) is tuple and len(answer) == 3:
            data, status, headers = answer
            media = headers.get("Content-Type") if type(headers) is dict else None
            if media in self.json_media and data is not None:
                # Content-Type is among the headers: no mimetype to work out.
                return flask.current_app.response_class(
                    self.jsonifier.dumps(data), status=status, headers=headers
                )
        return self.by_connexion(answer)


def _unchanged(answer: Any) -> Any:
    return answer


class PreparedOperation(FlaskOperation):  # type: ignore[misc]
    operation: AbstractOperation

    @classmethod
    def from_operation(
        cls, operation: AbstractOperation, *, pythonic_params: bool, jsonifier: Any
    ) -> "PreparedOperation":
        prepared: PreparedOperation = super().from_operation(
            operation, pythonic_params=pythonic_params, jsonifier=jsonifier
        )
        prepared.operation = operation
        # Worked out now, so a spec these views cannot bind stops the start.
        prepared.fn  # noqa: B018
        return prepared

    @cached_property
    def fn(self) -> Callable[..., Any]:
        handler = self._fn
        arguments = Arguments(
            self.operation, handler, pythonic if self.pythonic_params else sanitized
        )
        answer = Answer(self.operation, self.jsonifier)

        def view(**view_args: Any) -> Any:
            return answer(handler(**arguments(view_args)))

        return view


class PreparedFlaskApi(FlaskApi):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.prepared: list[PreparedOperation] = []
        super().__init__(*args, **kwargs)  # makes the operations

    def make_operation(self, operation: AbstractOperation) -> PreparedOperation:
        prepared = PreparedOperation.from_operation(
            operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )
        self.prepared.append(prepared)
        return prepared
