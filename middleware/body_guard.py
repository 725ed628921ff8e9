"""Hostile bodies stop here, before connexion buffers and parses them.

connexion reads the whole body into memory before validating and has no size limit;
its JSON parsing accepts duplicate keys (last wins), NaN, invalid UTF-8 (a 500) and
any nesting depth. This middleware enforces the limit while the body streams in
(413, with or without Content-Length) and parses JSON bodies strictly (400), so the
rest of the stack only ever sees a small, well-formed document.
"""

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handlers.problems import send_problem

MAX_DEPTH = 32


class BodyRejected(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class BodyGuardMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        try:
            self._check_declared_length(headers.get(b"content-length"))
            body = await self._read(receive)
            if _is_json(headers.get(b"content-type", b"")) and body:
                check_json(body)
        except BodyRejected as rejected:
            await send_problem(send, rejected.status, rejected.detail)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _check_declared_length(self, declared: bytes | None) -> None:
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise BodyRejected(413, f"The body may be at most {self.max_bytes} bytes.")

    async def _read(self, receive: Receive) -> bytes:
        """Read the body, giving up as soon as it grows past the limit (chunked too)."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return bytes(body)
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                raise BodyRejected(413, f"The body may be at most {self.max_bytes} bytes.")
            if not message.get("more_body"):
                return bytes(body)


def check_json(body: bytes) -> None:
    """Raise BodyRejected unless body is strict JSON: UTF-8, unique keys, finite, not deep."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyRejected(400, "The body is not valid UTF-8.") from None
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except BodyRejected:
        raise
    except (ValueError, RecursionError) as exc:
        # ValueError covers malformed JSON and integers too long to convert (> 4300 digits).
        raise BodyRejected(400, f"The body is not valid JSON: {str(exc)[:200]}") from None
    if _depth(document) > MAX_DEPTH:
        raise BodyRejected(400, f"The body is nested deeper than {MAX_DEPTH} levels.")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        duplicated = sorted({key for key in keys if keys.count(key) > 1})
        raise BodyRejected(400, f"The body repeats the key(s) {', '.join(duplicated)[:200]}.")
    return dict(pairs)


def _no_constants(name: str) -> None:
    raise BodyRejected(400, f"{name} is not a JSON number.")


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


def _is_json(content_type: bytes) -> bool:
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json" or media_type.endswith(b"+json")
