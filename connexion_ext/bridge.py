"""connexion 3 is an ASGI app; gunicorn's gevent worker speaks WSGI. This joins them.

The usual bridge (a2wsgi) runs an asyncio loop in a thread and connexion hands Flask
to a pool of 10 threads: every request hops gevent -> loop -> pool -> Flask, and a
worker can run only 10 Flask handlers at once. Here the whole ASGI stack runs inside
the request's own greenlet instead:

- `GreenletBridge` (WSGI -> ASGI) drives connexion's middleware coroutine to the end
  without an event loop. That works because nothing on the request path awaits real
  I/O: `receive` reads wsgi.input (which blocks this greenlet, not the worker) and
  `send` collects the answer.
- `InlineFlask` (ASGI -> WSGI) replaces connexion's thread-pool hop and calls Flask
  directly, so a handler waiting on the database yields to other greenlets.

Anything that truly needs an event loop (Swagger UI's static files use anyio's thread
pool) goes through a2wsgi, which has one.
"""

import io
from collections.abc import Coroutine, Iterable
from typing import Any, cast

from a2wsgi import ASGIMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connexion_ext.internals import (
    Environ,
    StartResponse,
    StatusStringMapping,
    WSGIApp,
    build_environ,
    build_scope,
)
from contract import UI_PATH

CHUNK = 64 * 1024


class GreenletBridge:
    """A WSGI app that runs an ASGI app to completion in the calling greenlet."""

    def __init__(self, app: ASGIApp, *, loop_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.loop_paths = tuple(loop_paths)
        self.with_loop = ASGIMiddleware(app)  # type: ignore[arg-type]

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            scope = cast(Scope, build_scope(environ))
        except UnicodeError:
            environ = _utf8_path(environ)
            scope = cast(Scope, build_scope(environ))
        if self.loop_paths and environ.get("PATH_INFO", "").startswith(self.loop_paths):
            return self.with_loop(environ, start_response)
        exchange = _Exchange(environ["wsgi.input"] if _has_body(environ) else _NO_BODY)
        call = self.app(scope, exchange.receive, exchange.send)
        coroutine = cast(Coroutine[Any, Any, None], call)
        try:
            coroutine.send(None)
        except StopIteration:
            pass
        else:
            coroutine.close()
            raise RuntimeError(
                f"{environ.get('PATH_INFO')} awaited an event loop; add it to loop_paths"
            )
        start_response(exchange.status_line(), exchange.headers)
        if environ["REQUEST_METHOD"] == "HEAD":
            return ()  # connexion's own errors come with one; the headers are the answer
        return exchange.body


_NO_BODY = io.BytesIO()


def _has_body(environ: Environ) -> bool:
    """Whether the request's framing announces a body: a Content-Length, chunked
    encoding, or a server that says wsgi.input ends where the body does (PEP 3333's
    wsgi.input_terminated; gunicorn's does). Flask reads no more than that either, so
    what connexion validates is what the handler gets."""
    return bool(
        environ.get("CONTENT_LENGTH")
        or environ.get("HTTP_TRANSFER_ENCODING")
        or environ.get("wsgi.input_terminated")
    )


def _utf8_path(environ: Environ) -> Environ:
    """The environ with a path that decodes as UTF-8 (U+FFFD for each bad byte).

    WSGI hands over the percent-decoded path as latin-1 text; /%ff is not UTF-8 and made
    building the scope fail before any middleware ran (gunicorn's HTML 500). With the
    bad bytes replaced, routing and validation answer it like any other unknown path
    or invalid parameter: a problem document with a request id and an access line.
    """
    fixed = dict(environ)
    for key in ("SCRIPT_NAME", "PATH_INFO"):
        raw = str(environ.get(key, "")).encode("latin-1")
        fixed[key] = raw.decode("utf-8", "replace").encode("utf-8").decode("latin-1")
    return cast(Environ, fixed)


class _Exchange:
    """One request's receive/send channel over WSGI."""

    __slots__ = ("_body_done", "_input", "body", "headers", "status")

    def __init__(self, wsgi_input: Any) -> None:
        self._input = wsgi_input
        self._body_done = False
        self.status = 500
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []

    async def receive(self) -> Message:
        if self._body_done:
            return {"type": "http.disconnect"}
        chunk = self._input.read(CHUNK)
        if not chunk:
            self._body_done = True
        return {"type": "http.request", "body": chunk, "more_body": bool(chunk)}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", ())
            ]
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body:
                self.body.append(body)

    def status_line(self) -> str:
        return str(StatusStringMapping[self.status])


class InlineFlask:
    """An ASGI app that calls a WSGI app (Flask) directly, in the caller's greenlet."""

    def __init__(self, app: WSGIApp) -> None:
        # `app`, as a2wsgi names it: connexion's add_wsgi_middleware wraps it there.
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        body = await Request(scope, receive).body()
        environ = _environ(scope, body)
        response: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):  # type: ignore[no-untyped-def]
            response[:] = [int(status.split(" ", 1)[0]), headers]

        result = self.app(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close:
                close()
        status, headers = response
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            }
        )
        await send({"type": "http.response.body", "body": content})


def _environ(scope: Scope, body: bytes) -> Environ:
    """The WSGI environ Flask gets: gunicorn's own when this request came through
    GreenletBridge (a2wsgi keeps it in the scope; nothing on the way changes what Flask
    reads of it but the body, read whole by now, and so its framing), else one built
    from the scope (connexion's test client, another ASGI server)."""
    original = scope.get("wsgi_environ")
    if original is None:
        return build_environ(scope, io.BytesIO(body))  # type: ignore[arg-type]
    environ = {**original, "wsgi.input": io.BytesIO(body), "asgi.scope": scope}
    if "HTTP_TRANSFER_ENCODING" in environ:
        del environ["HTTP_TRANSFER_ENCODING"]  # a chunked body has its length now
        environ["CONTENT_LENGTH"] = str(len(body))
    return cast(Environ, environ)


async def _lifespan(receive: Receive, send: Send) -> None:
    """Flask has nothing to start or stop; acknowledge both phases."""
    for phase in ("startup", "shutdown"):
        message = await receive()
        if message["type"] != f"lifespan.{phase}":
            return
        await send({"type": f"lifespan.{phase}.complete"})


def to_wsgi(app: ASGIApp, *, loop_paths: Iterable[str] = (UI_PATH,)) -> WSGIApp:
    return GreenletBridge(app, loop_paths=loop_paths)
