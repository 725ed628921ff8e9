"""gunicorn's gevent worker, stopping without resetting a connection it was sent.

When a worker stops, gunicorn's GeventWorker.run closes its listening socket at once.
Connections the kernel has already accepted for that socket but no worker has taken
yet wait in its accept queue; when the last process holding the socket closes it, the
kernel resets them (7 of 200 new connections got `Connection reset by peer` across a
SIGTERM). Here a worker first takes every connection waiting in the queue, without
blocking, and serves it, then closes the socket in the same step, with no switch to
another greenlet in between.

Before it accepts, a worker also runs the app's ASGI lifespan startup (and its shutdown
once it has stopped): connexion builds its whole middleware stack on the first call it
gets, and a recycled worker's replacement made the first requests it took wait for that
(over 1 s on a busy host).

`run` is GeventWorker.run of gunicorn 27.0 (the StreamServer path, without TLS) with
those steps added; the import below fails on another major version.

What gunicorn refuses itself, before the app sees a request (a request line over
limit_request_line: 414; too many or too long headers: 431; bytes that are not HTTP:
400), it answers with an HTML page; `write_problem` takes the place of gunicorn's
`util.write_error` in the workers, so those are problem documents like every other error.

gunicorn writes a response's head and its body in two sends. A worker killed between
them (SIGKILL, the OOM killer) left a proxy a head without its body, which it can only
pass on cut (HAProxy's `SD` state; once in CI's topology test, and 2 GETs in 40
SIGKILLs under load). `WholeResponse` sends the head with the first body bytes, so a
response is whole or absent, and a proxy retries an absent GET on another replica.
"""

import time
from collections import deque
from collections.abc import Generator
from functools import partial
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn import util, version_info
from gunicorn.http import wsgi
from gunicorn.workers import ggevent

from serving.backlog import close_answering_the_backlog

if version_info[0] != 27:
    raise ImportError(f"serving.worker was checked against gunicorn 27, not {version_info}")


def write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's util.write_error, answering with a problem document (RFC 9457)."""
    import structlog

    from connexion_ext.messages import cut
    from logging_ext import choose_request_id
    from problems import PROBLEM_JSON, SERVER_FAILED, problem_body

    request_id = choose_request_id(None)
    detail = cut(mesg) if mesg else SERVER_FAILED if status_int >= 500 else reason
    body = problem_body(status_int, detail, title=reason, request_id=request_id)
    structlog.get_logger("users_api.access").warning(
        "request refused before the app", status=status_int, request_id=request_id
    )
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: {PROBLEM_JSON}\r\nContent-Length: {len(body)}\r\n"
        f"X-Request-ID: {request_id}\r\nX-Content-Type-Options: nosniff\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


class WholeResponse(wsgi.Response):  # type: ignore[misc]
    """gunicorn's Response, holding its head back until the first body bytes go."""

    headers_sent: bool
    _head = b""

    def send_headers(self) -> None:
        if self.headers_sent:
            return
        lines = self.default_headers() + [f"{name}: {value}\r\n" for name, value in self.headers]
        self._head = f"{''.join(lines)}\r\n".encode("latin-1")
        self.headers_sent = True

    def _emit_body(self, data: bytes) -> None:
        self._send(b"%X\r\n%s\r\n" % (len(data), data) if self.chunked else data)

    def can_sendfile(self) -> bool:
        return False  # os.sendfile would pass the held head; the app sends no files

    def close(self) -> None:
        self.send_headers()
        self._send(b"0\r\n\r\n" if self.chunked else b"")

    def _send(self, data: bytes) -> None:
        head, self._head = self._head, b""
        if head or data:
            util.write(self.sock, head + data)


def use_in_this_process() -> None:
    """gunicorn writes refusals and responses with these, in this worker process only."""
    util.write_error = write_problem
    wsgi.Response = WholeResponse  # wsgi.create makes every HTTP/1 response from it


class GeventWorker(ggevent.GeventWorker):  # type: ignore[misc]
    def init_process(self) -> None:
        use_in_this_process()  # before serving
        super().init_process()

    def run(self) -> None:
        if self.cfg.is_ssl:
            raise RuntimeError("serving.worker.GeventWorker serves plain HTTP; TLS ends before")
        lifespan = Lifespan(getattr(self.wsgi, "app", None))
        lifespan.start()
        try:
            self._serve()
        finally:
            lifespan.stop()

    def _serve(self) -> None:
        servers = []
        for listener in self.sockets:
            listener.setblocking(1)
            # The handler asks the listener its name; a connection taken from the backlog
            # is handled after the listener has closed, so it is asked in advance.
            named = _Named(listener.getsockname())
            server = StreamServer(
                listener, handle=partial(self.handle, named), spawn=Pool(self.worker_connections)
            )
            if self.cfg.workers > 1:
                server.max_accept = 1
            server.start()
            servers.append(server)

        while self.alive:
            self.notify()
            gevent.sleep(1.0)

        for server in servers:
            close_answering_the_backlog(server)
        # Finish the requests in flight within graceful_timeout, as gunicorn does.
        started = time.monotonic()
        while time.monotonic() - started <= self.cfg.graceful_timeout:
            if all(server.pool.free_count() == server.pool.size for server in servers):
                return
            self.notify()
            gevent.sleep(1.0)
        self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
        for server in servers:
            server.stop(timeout=1)


class _Named:
    """What gunicorn's handler asks of the listener: its address."""

    def __init__(self, name: object) -> None:
        self.name = name

    def getsockname(self) -> object:
        return self.name


class Lifespan:
    """An ASGI app's lifespan (startup now, shutdown later) driven without an event loop,
    as connexion_ext/bridge.py drives requests: nothing on it awaits real I/O."""

    def __init__(self, app: Any) -> None:
        self.inbox: deque[dict[str, str]] = deque()
        self.outbox: list[dict[str, Any]] = []
        self.coroutine = None
        if app is not None:
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            self.coroutine = app(scope, self.receive, self.send)

    def start(self) -> None:
        self._deliver("lifespan.startup")

    def stop(self) -> None:
        self._deliver("lifespan.shutdown")

    def _deliver(self, message_type: str) -> None:
        if self.coroutine is None:
            return
        self.inbox.append({"type": message_type})
        try:
            self.coroutine.send(None)
        except StopIteration:
            self.coroutine = None
        failed = [m for m in self.outbox if m["type"].endswith(".failed")]
        if failed:
            raise RuntimeError(f"{message_type} failed: {failed[0].get('message', '')}")

    async def receive(self) -> dict[str, str]:
        while not self.inbox:
            await _NextMessage()
        return self.inbox.popleft()

    async def send(self, message: dict[str, Any]) -> None:
        self.outbox.append(message)


class _NextMessage:
    """Hands control back to Lifespan._deliver until the next message is there."""

    def __await__(self) -> Generator[None, None, None]:
        yield
