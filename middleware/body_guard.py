"""Hostile bodies stop here, before connexion buffers and parses them.

connexion reads the whole body into memory before validating and has no size limit;
its JSON parsing accepts duplicate keys (last wins), NaN, invalid UTF-8 (a 500) and
any nesting depth. Two middlewares close that:

- BodyLimitMiddleware, outermost, enforces MAX_BODY_BYTES while the body streams in
  (413, with or without Content-Length), before anything is buffered, and BODY_TIMEOUT
  (408, and the connection closes): a client trickling a body under the size limit
  held its connection for as long as it liked.
- StrictJsonMiddleware, after authentication and before connexion's validation,
  parses JSON bodies strictly (400), so validation only ever sees I-JSON, and refuses
  a write's body that has no Content-Type (415): connexion would assume the spec's
  media type, skip parsing and hand the handler raw bytes (a 500).
"""

import json
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from connexion.exceptions import UnsupportedMediaTypeProblem
from gevent import Timeout
from gevent.monkey import is_module_patched
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from connexion_ext import messages, operation_id
from connexion_ext.channels import replay
from contract import operations
from problems import ProblemResponse

MAX_DEPTH = 32


class BodyTooLarge(Exception):
    """The body is, or says it will be, larger than max_bytes."""


class NotIJson(ValueError):
    """The body is not I-JSON (RFC 7493); the message says why, as a 400's `errors` entry."""


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Every method: a GET's body means nothing, but it is read all the same.
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if _has_no_body(scope, headers):
            await self.app(scope, receive, send)
            return
        deadline = None
        try:
            self._check_declared_length(headers.get("content-length"))
            with self._in_time(headers) as deadline:
                body = await self._read(scope, receive)
        except BodyTooLarge:
            detail = f"The body may be at most {self.max_bytes} bytes."
            await ProblemResponse(413, detail)(scope, receive, send)
            return
        except Timeout as timeout:
            if timeout is not deadline:
                raise
            detail = f"The body did not arrive within {self.timeout:g} seconds."
            # RFC 9110 15.5.9: the rest of the body may still come, so the connection closes.
            await ProblemResponse(408, detail, headers={"Connection": "close"})(
                scope, receive, send
            )
            return
        except ClientDisconnect:
            return  # nobody is left to answer
        await self.app(scope, replay(body, receive), send)

    def _in_time(self, headers: Headers) -> AbstractContextManager[object]:
        """A deadline for the whole body, when one is coming. The read blocks the
        request's greenlet in the gevent bridge (serving's workers), where a gevent
        Timeout ends it; in a plain process there is nothing to bound."""
        expected = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        if expected and is_module_patched("socket"):
            deadline: AbstractContextManager[object] = Timeout(self.timeout)
            return deadline
        return nullcontext()

    def _check_declared_length(self, declared: str | None) -> None:
        # ASCII digits only: str.isdigit() also takes latin-1's "²", which int() refuses.
        if (
            declared
            and declared.isascii()
            and declared.isdigit()
            and int(declared) > self.max_bytes
        ):
            raise BodyTooLarge

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        """Read the body, giving up as soon as it grows past the limit (chunked too)."""
        body = bytearray()
        async for chunk in Request(scope, receive).stream():
            body += chunk
            if len(body) > self.max_bytes:
                raise BodyTooLarge
        return bytes(body)


def _has_no_body(scope: Scope, headers: Headers) -> bool:
    """An HTTP/1 request with neither Content-Length nor Transfer-Encoding has no body
    (RFC 9112, 6.3), nor has one of Content-Length 0. (HTTP/2 frames a body without them.)"""
    if scope.get("http_version") not in ("1.0", "1.1"):
        return False
    length = headers.get("content-length")
    return length == "0" or (length is None and "transfer-encoding" not in headers)


class StrictJsonMiddleware:
    """Refuse JSON bodies that are not I-JSON; runs after the caller is authenticated."""

    def __init__(self, app: ASGIApp, *, spec: dict[str, Any]) -> None:
        self.app = app
        # The operations that take a body (the contract's requestBody).
        self.with_body = frozenset(
            operation["operationId"]
            for _path, _method, operation in operations(spec)
            if "requestBody" in operation
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        routed = operation_id(scope) if scope["type"] == "http" else None
        if not routed:
            # Unrouted requests end in a 404 without anyone reading their body.
            await self.app(scope, receive, send)
            return
        content_type = Headers(scope=scope).get("content-type")
        untyped_write = content_type is None and routed in self.with_body
        if not (untyped_write or _is_json(content_type)):
            await self.app(scope, receive, send)
            return
        body = await Request(scope, receive).body()
        if body and untyped_write:
            raise UnsupportedMediaTypeProblem(
                detail="The body has no Content-Type header; send the media type it is in."
            )
        if body:
            try:
                check_json(body)
            except NotIJson as refused:
                raise messages.invalid_request([{"pointer": "", "detail": str(refused)}]) from None
        await self.app(scope, replay(body, receive), send)


def check_json(body: bytes) -> None:
    """Raise NotIJson unless body is I-JSON (RFC 7493): UTF-8, unique keys, finite
    numbers, no lone surrogates; and not nested too deep."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise NotIJson("the body is not valid UTF-8") from None
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except NotIJson:
        raise
    except RecursionError:
        raise NotIJson(f"the body is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise NotIJson(f"the body is not valid JSON: {exc}") from None
    except ValueError:  # int() refuses the digits of a number (sys.int_info)
        raise NotIJson("the body holds a number of more than 4300 digits") from None
    if _depth(document) > MAX_DEPTH:
        raise NotIJson(f"the body is nested deeper than {MAX_DEPTH} levels")
    if "\\u" in text and _has_lone_surrogate(document):
        raise NotIJson("the body holds a lone UTF-16 surrogate (\\ud800-\\udfff)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        duplicated = sorted({key for key in keys if keys.count(key) > 1})
        raise NotIJson(f"the body repeats the key(s) {messages.cut(', '.join(duplicated))}")
    return dict(pairs)


def _no_constants(name: str) -> None:
    raise NotIJson(f"{name} is not a JSON number")


def _depth(document: Any) -> int:
    """Levels of nested arrays/objects (a scalar is 0), counted breadth-first."""
    depth, level = 0, [document]
    while True:
        containers = [node for node in level if isinstance(node, dict | list)]
        if not containers or depth > MAX_DEPTH:
            return depth
        depth += 1
        level = [
            child
            for node in containers
            for child in (node.values() if isinstance(node, dict) else node)
        ]


def _has_lone_surrogate(document: Any) -> bool:
    """Escaped surrogates that did not pair up survive json.loads as lone code points."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")
