"""connexion's validators, with each schema's validator built once, every problem
reported with its place, and four fixes.

connexion 3.3 builds a new jsonschema validator (and, for parameters, deep-copies the
schema first) for every parameter and body of every request, and stops at the first
problem, worded the way Python prints values (`None is not of type 'string'`). These
keep one validator per schema, collect every problem (jsonschema's iter_errors) and
raise one 400 whose `errors` name each one's place: a JSON pointer into the body, or a
parameter and where it goes (connexion_ext/messages.py words them). Handed to connexion
through its `validator_map`.

The fixes (connexion 3.3; tests/test_hostile_input.py and test_errors.py fail if an
upgrade changes what these rely on):
- an integer parameter must be written in ASCII digits (int() reads much more);
- a query parameter that is not an array may be given once, not several times;
- a missing body and a `null` body are told apart, and a chunked body (no
  Content-Length) is read instead of being called missing;
- a HEAD's empty body is not checked against the GET's schema (that was a 500 with
  VALIDATE_RESPONSES on).
"""

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.json_schema import Draft4RequestValidator
from connexion.lifecycle import ConnexionRequest
from connexion.validators import (
    VALIDATOR_MAP,
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    ParameterValidator,
)
from jsonschema import Draft4Validator
from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from connexion_ext import messages
from connexion_ext.channels import replay
from connexion_ext.internals import cookie_parser
from connexion_ext.messages import Entry

# id(schema) -> (schema, validator). Holding the schema keeps its id from being reused.
_validators: dict[int, tuple[Any, Any]] = {}
_MAX_VALIDATORS = 4096  # a few dozen per app; only test runs build many apps


def _compiled(schema: dict[str, Any], cls: Any) -> Any:
    cached = _validators.get(id(schema))
    if cached is None or cached[0] is not schema:
        if len(_validators) >= _MAX_VALIDATORS:
            _validators.clear()
        cached = _validators[id(schema)] = (
            schema,
            cls(schema, format_checker=Draft4Validator.FORMAT_CHECKER),
        )
    return cached[1]


# How an integer is written in a URL. Python's int(), which connexion converts with,
# also reads "1_0", "+1", " 1" and non-ASCII digits: one user, many URLs. More than 30
# digits is past any bound a schema here has (and int() refuses over 4300).
_INTEGER = re.compile(r"-?[0-9]{1,30}\Z")
_DIGITS = re.compile(r"-?[0-9]+\Z")
# An integer schema with only these keys is checked by its bounds alone: nothing else
# in it constrains the value (Draft 4 checks no integer formats).
_PLAIN_INTEGER_KEYS = frozenset(
    {"type", "format", "minimum", "maximum", "description", "example", "default", "title"}
)


@dataclass(frozen=True)
class _Parameter:
    """One parameter of an operation, with what checking it needs worked out once."""

    name: str
    place: str  # query, path, header or cookie
    required: bool
    schema: dict[str, Any]
    # (minimum, maximum) when the bounds are all its schema says; a value within them
    # is valid without asking jsonschema
    bounds: tuple[float, float] | None

    @classmethod
    def of(cls, param: dict[str, Any]) -> "_Parameter":
        schema = _schema(param)
        bounds = None
        plain = schema.keys() <= _PLAIN_INTEGER_KEYS and schema.get("format") in (
            None,
            "int32",
            "int64",
        )
        if schema.get("type") == "integer" and plain:
            bounds = (schema.get("minimum", -math.inf), schema.get("maximum", math.inf))
        return cls(param["name"], param["in"], bool(param.get("required")), schema, bounds)


@dataclass(frozen=True)
class _Plan:
    """An operation's parameters by place (connexion makes a validator per request)."""

    query: tuple[_Parameter, ...]
    query_names: frozenset[str]
    path: tuple[_Parameter, ...]
    header: tuple[_Parameter, ...]
    cookie: tuple[_Parameter, ...]


_plans: dict[int, tuple[Any, _Plan]] = {}


def _plan(parameters: list[dict[str, Any]]) -> _Plan:
    cached = _plans.get(id(parameters))
    if cached is None or cached[0] is not parameters:
        if len(_plans) >= _MAX_VALIDATORS:
            _plans.clear()
        each = [_Parameter.of(param) for param in parameters]

        def at(place: str) -> tuple[_Parameter, ...]:
            return tuple(param for param in each if param.place == place)

        query = at("query")
        plan = _Plan(
            query, frozenset(p.name for p in query), at("path"), at("header"), at("cookie")
        )
        cached = _plans[id(parameters)] = (parameters, plan)
    return cached[1]


class ContractParameterValidator(ParameterValidator):  # type: ignore[misc]
    """Every parameter checked, every problem reported with the parameter's name and place.

    Read straight from the ASGI scope: connexion's own validator wraps each request in a
    ConnexionRequest and a starlette Request first, and parses an empty query string.
    """

    def __init__(
        self,
        parameters: list[dict[str, Any]],
        uri_parser: Any,
        strict_validation: bool,  # connexion always passes the app's setting
        security_query_params: Iterable[str] | None = None,
    ) -> None:
        self.plan = _plan(parameters)
        self.uri_parser = uri_parser
        self.strict_validation = strict_validation
        self.security_query_params = frozenset(security_query_params or ())

    def validate(self, scope: Scope) -> None:
        plan = self.plan
        entries: list[Entry] = []
        query = QueryParams(scope["query_string"]) if scope.get("query_string") else QueryParams()
        if self.strict_validation and query:
            known = [param.name for param in plan.query]
            extra = set(query) - plan.query_names - self.security_query_params
            entries += [messages.unknown_parameter(name, "query", known) for name in sorted(extra)]
        for param in plan.query:
            values = query.getlist(param.name)
            if len(values) > 1 and param.schema.get("type") != "array":
                entries.append(messages.repeated_parameter(param.name, "query", len(values)))
                continue
            entries += self._check(param, values[0] if values else None, scope)
        path_params = scope.get("path_params", {})
        for param in plan.path:
            entries += self._check(param, path_params.get(param.name.replace("-", "_")), scope)
        if plan.header or plan.cookie:
            headers = Headers(scope=scope)
            for param in plan.header:
                entries += self._check(param, headers.get(param.name), scope)
            cookies = cookie_parser(headers.get("cookie", "")) if plan.cookie else {}
            for param in plan.cookie:
                entries += self._check(param, cookies.get(param.name), scope)
        if entries:
            raise messages.invalid_request(entries)

    def _check(self, param: _Parameter, raw: Any, scope: Scope) -> list[Entry]:
        name, place, schema = param.name, param.place, param.schema
        if raw is None:
            return [messages.missing_parameter(name, place)] if param.required else []
        kind = schema.get("type")
        if kind == "integer" and isinstance(raw, str):
            if not _INTEGER.match(raw):
                if _DIGITS.match(raw):
                    return _out_of_range(name, place, raw, schema)
                return [messages.not_an_integer(name, place, raw)]
            value: Any = int(raw)
            if param.bounds and param.bounds[0] <= value <= param.bounds[1]:
                return []
        elif kind == "string" or not isinstance(raw, str):
            value = raw
        else:  # arrays, numbers, booleans: connexion's own conversion (none in this spec)
            # (header and cookie values have no converted form: the raw text is checked)
            converted = getattr(
                ConnexionRequest(scope, uri_parser=self.uri_parser), f"{place}_params", {}
            )
            value = converted.get(name, raw)
        errors = _compiled(schema, Draft4Validator).iter_errors(value)
        return messages.parameter_entries(name, place, errors)


def _schema(param: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = param.get("schema", param)
    return schema


def _out_of_range(name: str, place: str, raw: str, schema: dict[str, Any]) -> list[Entry]:
    """A number with more digits than any bound: the bound it breaks, worded like the rest."""
    keyword = "minimum" if raw.startswith("-") else "maximum"
    if keyword not in schema:
        return [messages.not_an_integer(name, place, raw)]
    relation = "at least" if keyword == "minimum" else "at most"
    detail = f"{messages.cut(name)} must be {relation} {schema[keyword]}, not {messages.echo(raw)}"
    return [messages.parameter_entry(name, place, detail)]


class ContractJSONBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    """A JSON body: read whole (chunked or not), then every problem with its pointer.

    StrictJsonMiddleware has already refused bodies that are not I-JSON, so parsing
    here cannot fail on a body it let through.
    """

    async def wrap_receive(self, receive: Receive, *, scope: Scope) -> tuple[Receive, Scope]:
        body = await Request(scope, receive).body()
        if not body:
            if self._required:
                raise messages.missing_body()
        else:
            document = json.loads(body)
            if not (document is None and self._nullable):
                self._validate(document)
        return replay(body, receive), _with_length(scope, len(body))

    def _validate(self, body: Any) -> None:
        validator = _compiled(self._schema, Draft4RequestValidator)
        entries, total = messages.body_entries(validator.iter_errors(body))
        if entries:
            raise messages.invalid_request(entries, total)


def _with_length(scope: Scope, length: int) -> Scope:
    """The scope of a body now read whole: a chunked one gets the Content-Length it
    turned out to have (and loses Transfer-Encoding), so Flask reads it too."""
    headers = scope["headers"]
    if any(name == b"content-length" for name, _ in headers):
        return scope
    kept = [(name, value) for name, value in headers if name != b"transfer-encoding"]
    return {**scope, "headers": [*kept, (b"content-length", str(length).encode())]}


class JSONResponseValidator(JSONResponseBodyValidator):  # type: ignore[misc]
    def wrap_send(self, send: Send) -> Send:
        # RFC 9110, 9.3.2: a HEAD answers with the GET's headers and no content.
        if self._scope["method"] == "HEAD":
            return send
        return super().wrap_send(send)  # type: ignore[no-any-return]


VALIDATORS = {
    "parameter": ContractParameterValidator,
    "body": MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": ContractJSONBodyValidator}),
    "response": MediaTypeDict({**VALIDATOR_MAP["response"], "*/*json": JSONResponseValidator}),
}
