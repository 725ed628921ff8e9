"""connexion's validators, with each schema's validator built once, and three fixes.

connexion 3.3 builds a new jsonschema validator (and, for parameters, deep-copies the
schema first) for every parameter and body of every request. A validator does not
change once built, so these keep one per schema; what is checked, and every error
message, stays connexion's. Registered in app.py through `validator_map`.

The fixes (connexion 3.3; tests/test_hostile_input.py and test_users_api.py fail if an
upgrade changes what these rely on, such as ConnexionRequest._starlette_request):
- an integer parameter must be written in ASCII digits (int() reads much more);
- a query parameter that is not an array may be given once, not several times;
- a HEAD's empty body is not checked against the GET's schema (that was a 500 with
  VALIDATE_RESPONSES on).
"""

import re
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.json_schema import Draft4RequestValidator
from connexion.utils import is_null, is_nullable
from connexion.validators import (
    VALIDATOR_MAP,
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    ParameterValidator,
)
from jsonschema import Draft4Validator, ValidationError
from starlette.types import Send

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
# also reads "1_0", "+1", " 1" and non-ASCII digits: one user, many URLs.
_INTEGER = re.compile(r"-?[0-9]+\Z")


class CachedParameterValidator(ParameterValidator):  # type: ignore[misc]
    def validate_query_parameter(self, param: dict[str, Any], request: Any) -> str | None:
        raw = request._starlette_request.query_params.getlist(param["name"])
        if len(raw) > 1 and param.get("schema", {}).get("type") != "array":
            return f"Query parameter '{param['name']}' is given {len(raw)} times; give it once"
        if raw and not _written_as_its_type(raw[0], param):
            return f"{raw[0]!r} is not of type 'integer'"
        return super().validate_query_parameter(param, request)  # type: ignore[no-any-return]

    def validate_path_parameter(self, param: dict[str, Any], request: Any) -> str | None:
        raw = request._starlette_request.path_params.get(param["name"])
        if isinstance(raw, str) and not _written_as_its_type(raw, param):
            return f"{raw!r} is not of type 'integer'"
        return super().validate_path_parameter(param, request)  # type: ignore[no-any-return]

    def validate_parameter(
        self, parameter_type: str, value: Any, param: dict[str, Any], param_name: Any = None
    ) -> str | None:
        if is_nullable(param) and is_null(value):
            return None
        if value is not None:
            try:
                _compiled(param.get("schema", param), Draft4Validator).validate(value)
            except ValidationError as exception:
                return str(exception)
            return None
        if param.get("required"):
            return f"Missing {parameter_type} parameter '{param['name']}'"
        return None


def _written_as_its_type(raw: str, param: dict[str, Any]) -> bool:
    return param.get("schema", {}).get("type") != "integer" or bool(_INTEGER.match(raw))


class CachedJSONBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    @property
    def _validator(self) -> Any:
        return _compiled(self._schema, Draft4RequestValidator)


class JSONResponseValidator(JSONResponseBodyValidator):  # type: ignore[misc]
    def wrap_send(self, send: Send) -> Send:
        # RFC 9110, 9.3.2: a HEAD answers with the GET's headers and no content.
        if self._scope["method"] == "HEAD":
            return send
        return super().wrap_send(send)  # type: ignore[no-any-return]


VALIDATORS = {
    "parameter": CachedParameterValidator,
    "body": MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": CachedJSONBodyValidator}),
    "response": MediaTypeDict({**VALIDATOR_MAP["response"], "*/*json": JSONResponseValidator}),
}
