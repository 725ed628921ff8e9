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
from collections.abc import Callable, Coroutine, Iterable
from functools import cached_property, partial, wraps
from typing import Any, cast

from a2wsgi import ASGIMiddleware
from a2wsgi.asgi import StatusStringMapping, build_scope
from a2wsgi.wsgi import build_environ
from a2wsgi.wsgi_typing import Environ, StartResponse, WSGIApp
from connexion import FlaskApp
from connexion.apps.flask import FlaskApi, FlaskOperation
from connexion.decorators import FlaskDecorator
from connexion.decorators.parameter import (
    SyncParameterDecorator,
    prep_kwargs,
    unwrap_decorators,
)
from connexion.lifecycle import WSGIRequest
from connexion.operations import AbstractOperation
from connexion.utils import inspect_function_arguments
from flask import Flask
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
        exchange = _Exchange(environ["wsgi.input"])
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
        return exchange.body


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

    def __init__(self, wsgi_app: WSGIApp) -> None:
        self.wsgi_app = wsgi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        environ = build_environ(scope, io.BytesIO(body))  # type: ignore[arg-type]
        response: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):  # type: ignore[no-untyped-def]
            response[:] = [int(status.split(" ", 1)[0]), headers]

        result = self.wsgi_app(environ, start_response)
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


async def _lifespan(receive: Receive, send: Send) -> None:
    """Flask has nothing to start or stop; acknowledge both phases."""
    for phase in ("startup", "shutdown"):
        message = await receive()
        if message["type"] != f"lifespan.{phase}":
            return
        await send({"type": f"lifespan.{phase}.complete"})


def call_flask_inline(app: FlaskApp) -> None:
    """Replace connexion's thread-pool hop into Flask with a direct call, and build each
    operation's Flask view once.

    connexion keeps that hop in FlaskApp._middleware_app.asgi_app and makes the views in
    its add_api (connexion 3.3; the test suite runs every request through this path, so
    an upgrade that moves either fails loudly).
    """
    flask_asgi = app._middleware_app
    flask_asgi.asgi_app = InlineFlask(flask_asgi.app.wsgi_app)
    flask_asgi.add_api = partial(_add_prepared_api, flask_asgi.app)


def _add_prepared_api(
    flask_app: Flask, specification: Any, *, name: str | None = None, **kwargs: Any
) -> FlaskApi:
    """FlaskASGIApp.add_api, making PreparedOperation views."""
    api = PreparedFlaskApi(specification, **kwargs)
    flask_app.register_blueprint(api.blueprint, **({"name": name} if name else {}))
    return api


class DecorateOnce(FlaskDecorator):  # type: ignore[misc]
    """connexion's decorator chain (parameters in, response out), built once per view.

    connexion rebuilds it, inspecting the handler's signature, and a URI parser for
    every request; only the request itself has to be fresh. `operation` is the spec's
    operation the view serves.
    """

    def __init__(self, operation: AbstractOperation, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.operation = operation

    @property
    def _parameter_decorator_cls(self) -> Any:
        if self.operation.is_request_body_defined:
            return SyncParameterDecorator
        return ParametersOnly

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        decorated = self.decorate(function)
        operation = self.operation
        parser_class = self.uri_parser_class or operation.uri_parser_class
        uri_parser = parser_class(operation.parameters, operation.body_definition())

        @wraps(function)
        def view(*_args: Any, **_kwargs: Any) -> Any:
            return decorated(self.framework.get_request(uri_parser=uri_parser))

        return view


class ParametersOnly(SyncParameterDecorator):  # type: ignore[misc]
    """connexion's parameter decorator for an operation without a request body.

    connexion's version asks every request for its body and its multipart files; with no
    body in the spec neither can become an argument (unless the handler takes **kwargs,
    which then gets connexion's version), so a GET skips both.
    """

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        arguments, has_kwargs = inspect_function_arguments(unwrap_decorators(function))
        if has_kwargs:
            return super().__call__(function)  # type: ignore[no-any-return]
        sanitize = self.sanitize_fn

        @wraps(function)
        def wrapper(request: WSGIRequest) -> Any:
            kwargs = prep_kwargs(
                request,
                request_body=None,
                files={},
                arguments=arguments,
                has_kwargs=False,
                sanitize=sanitize,
            )
            return function(**kwargs)

        return wrapper


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
        return prepared

    @cached_property
    def fn(self) -> Callable[..., Any]:
        decorator = DecorateOnce(
            self.operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )
        return decorator(self._fn)


class PreparedFlaskApi(FlaskApi):  # type: ignore[misc]
    def make_operation(self, operation: AbstractOperation) -> PreparedOperation:
        return PreparedOperation.from_operation(
            operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )


def to_wsgi(app: FlaskApp, *, loop_paths: Iterable[str] = ("/v1/ui",)) -> WSGIApp:
    return GreenletBridge(app, loop_paths=loop_paths)
