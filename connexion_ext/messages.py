"""What a 400 says: each thing wrong with the request, where it is, and how to fix it.

Every problem becomes one entry of the problem document's `errors` (openapi.yaml,
ProblemError): `{"pointer": "/age", "detail": ...}` for the body (RFC 6901),
`{"parameter": "limit", "in": "query", "detail": ...}` for a parameter. Details are plain
English, name what they are about and quote values as JSON, cut after MAX_ECHO
characters, so a 60,000-character name never comes back whole.
"""

import json
from collections.abc import Iterable, Iterator
from typing import Any

from connexion.exceptions import ProblemException
from jsonschema import ValidationError

MAX_ECHO = 100  # characters of a client's value quoted back, at most
MAX_LISTED = 20  # entries in `errors`, at most; `detail` says how many there were
Entry = dict[str, str]

_A_TYPE = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "object": "an object",
    "array": "an array",
    "boolean": "true or false",
    "null": "null",
}


def echo(value: Any) -> str:
    """`value` in JSON notation, at most MAX_ECHO characters (an ellipsis marks a cut)."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 1] + "…"


def cut(name: str) -> str:
    return name if len(name) <= MAX_ECHO else name[: MAX_ECHO - 1] + "…"


def invalid_request(entries: list[Entry], total: int | None = None) -> ProblemException:
    """The 400 for these entries; problems.py renders `errors` from its `ext`."""
    total = len(entries) if total is None else total
    listed = entries[:MAX_LISTED]
    details = "; ".join(entry["detail"] for entry in listed[:3])
    if total == 1:
        detail = f"{details}."
    else:
        more = "; and more, listed in errors" if total > 3 else ""
        shown = f" (errors lists the first {MAX_LISTED})" if total > MAX_LISTED else ""
        detail = f"{total} problems{shown}: {details}{more}."
    return ProblemException(status=400, detail=detail, ext={"errors": listed})


# -- the body ------------------------------------------------------------------------


def missing_body() -> ProblemException:
    return invalid_request(
        [{"pointer": "", "detail": "the request has no body; this operation needs one"}]
    )


def body_entries(errors: Iterable[ValidationError]) -> tuple[list[Entry], int]:
    """Entries for jsonschema's errors (iter_errors), at most MAX_LISTED, and how many."""
    entries: list[Entry] = []
    total = 0
    required_seen: dict[tuple[Any, ...], int] = {}
    for error in errors:
        for pointer, detail in _body_problems(error, required_seen):
            total += 1
            if len(entries) < MAX_LISTED:
                entries.append({"pointer": pointer, "detail": detail})
    return entries, total


def _body_problems(
    error: ValidationError, required_seen: dict[tuple[Any, ...], int]
) -> Iterator[tuple[str, str]]:
    path = tuple(error.absolute_path)
    if error.validator == "required":
        # jsonschema raises one error per missing property, in the order `required`
        # lists them; its message is all that names the property.
        missing = [name for name in error.validator_value if name not in error.instance]
        index = required_seen.get(path, 0)
        required_seen[path] = index + 1
        if index < len(missing):
            name = missing[index]
            yield _pointer((*path, name)), f"{cut(name)} is required"
        return
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", ()))
        fields = f"the fields are {', '.join(known)}" if known else "it takes none"
        for name in error.instance:
            if name not in known:
                yield _pointer((*path, name)), f"{cut(name)} is not a field here ({fields})"
        return
    yield _pointer(path), describe(error, _subject(path))


def _pointer(path: tuple[Any, ...]) -> str:
    """RFC 6901: "" is the whole document; "~" and "/" in a name are escaped. Cut like
    any echo: a 60,000-character field name is not sent back whole either."""
    return cut("".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path))


def _subject(path: tuple[Any, ...]) -> str:
    if not path:
        return "the body"
    last = path[-1]
    return f"item {last}" if isinstance(last, int) else cut(str(last))


# -- parameters ----------------------------------------------------------------------


def parameter_entry(name: str, place: str, detail: str) -> Entry:
    return {"parameter": cut(name), "in": place, "detail": detail}


def unknown_parameter(name: str, place: str, known: list[str]) -> Entry:
    listed = ", ".join(known) if known else "none"
    return parameter_entry(
        name,
        place,
        f"{cut(name)} is not a {place} parameter of this operation (they are {listed})",
    )


def repeated_parameter(name: str, place: str, times: int) -> Entry:
    return parameter_entry(name, place, f"{cut(name)} is given {times} times; give it once")


def missing_parameter(name: str, place: str) -> Entry:
    return parameter_entry(name, place, f"{cut(name)} is required")


def not_an_integer(name: str, place: str, raw: str) -> Entry:
    return parameter_entry(
        name, place, f"{cut(name)} must be an integer in decimal digits, not {echo(raw)}"
    )


def parameter_entries(name: str, place: str, errors: Iterable[ValidationError]) -> list[Entry]:
    return [parameter_entry(name, place, describe(error, cut(name))) for error in errors]


# -- one jsonschema error, in words ----------------------------------------------------


def describe(error: ValidationError, subject: str) -> str:
    keyword, bound, value, schema = (
        error.validator,
        error.validator_value,
        error.instance,
        error.schema,
    )
    if keyword == "type":
        kinds = [bound] if isinstance(bound, str) else list(bound)
        wanted = " or ".join(_A_TYPE.get(kind, kind) for kind in kinds)
        return f"{subject} must be {wanted}, not {echo(value)}"
    if keyword == "minimum":
        relation = "greater than" if schema.get("exclusiveMinimum") is True else "at least"
        return f"{subject} must be {relation} {bound}, not {echo(value)}"
    if keyword == "maximum":
        relation = "less than" if schema.get("exclusiveMaximum") is True else "at most"
        return f"{subject} must be {relation} {bound}, not {echo(value)}"
    if keyword == "minLength":
        if bound == 1:
            return f"{subject} must not be empty"
        return f"{subject} must be at least {bound} characters long; it has {len(value)}"
    if keyword == "maxLength":
        return f"{subject} must be at most {bound} characters long; it has {len(value)}"
    if keyword == "pattern":
        meaning = schema.get("x-pattern-message")
        if meaning:
            return f"{subject} {meaning}"
        return f"{subject} must match the pattern {echo(bound)}, not {echo(value)}"
    if keyword == "enum":
        return f"{subject} must be one of {', '.join(echo(v) for v in bound)}; not {echo(value)}"
    if keyword == "format":
        return f"{subject} must be a valid {bound}, not {echo(value)}"
    return f"{subject} does not satisfy {keyword}: {echo(bound)} (it is {echo(value)})"
