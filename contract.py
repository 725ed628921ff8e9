"""The contract, openapi.yaml: parsed once, and the facts other parts read from it."""

import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

SPEC_FILE = Path(__file__).with_name("openapi.yaml")
# Where the service publishes its contract and the Swagger UI that browses it.
SPEC_URL = "/v1/openapi.json"
UI_PATH = "/v1/ui"
# The keys of a Path Item that name operations (OpenAPI 3.0).
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PATH_PARAMETER = re.compile(r"\{([^}/]+)\}")


@cache
def load_spec() -> dict[str, Any]:
    """The contract, parsed once per process. Callers must not change it."""
    spec: dict[str, Any] = yaml.load(SPEC_FILE.read_bytes(), Loader=yaml.CSafeLoader)
    return spec


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, method, operation) for every operation, in the spec's order."""
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def contract_methods(spec: dict[str, Any]) -> list[str]:
    """Every HTTP method some operation answers, in upper case, in the spec's order."""
    return list(dict.fromkeys(method.upper() for _path, method, _op in operations(spec)))


def allowed_methods(spec: dict[str, Any], path: str) -> list[str]:
    """What a 405 on `path` lists in Allow: its operations, HEAD last (wherever GET is)."""
    methods = [method.upper() for method in spec["paths"][path] if method in METHODS]
    head = ["HEAD"] if "GET" in methods or "HEAD" in methods else []
    return [method for method in methods if method != "HEAD"] + head


def path_parameters(template: str) -> list[str]:
    """`/v1/users/{user_id}` -> ["user_id"]: a path template's parameters, in order."""
    return _PATH_PARAMETER.findall(template)


def path_pattern(template: str, segments: Mapping[str, str] | None = None) -> re.Pattern[str]:
    """`/v1/users/{user_id}` -> a regex for a path written exactly so. Each parameter is
    one path segment, or what `segments` gives for its name; the i-th (path_parameters'
    order) is the group named pi."""
    parts = _PATH_PARAMETER.split(template)
    pattern = re.escape(parts[0])
    for i, (name, literal) in enumerate(zip(parts[1::2], parts[2::2], strict=True)):
        segment = (segments or {}).get(name, "[^/]+")
        pattern += f"(?P<p{i}>{segment}){re.escape(literal)}"
    return re.compile(pattern + r"\Z")
