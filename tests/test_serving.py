"""The serving layer on real sockets: stopping without resetting a connection
(serving/backlog.py), recycling turns, and responses that leave a worker whole."""

import socket
import sys

import gevent.socket
import pytest
from gevent.pool import Pool
from gevent.server import StreamServer

from serving.backlog import close_answering_the_backlog, refuse_new_connections

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="a Linux socket filter")


def listener(kind: type[socket.socket] = socket.socket) -> socket.socket:
    sock = kind()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


@linux_only
def test_a_refusing_listener_completes_no_new_handshake_but_keeps_its_queue():
    sock = listener()
    address = sock.getsockname()
    queued = socket.create_connection(address, timeout=1)
    refuse_new_connections(sock)
    late = socket.socket()
    late.settimeout(0.3)
    with pytest.raises(TimeoutError):  # its SYN is dropped: no answer, not a reset
        late.connect(address)
    served, _ = sock.accept()
    queued.sendall(b"ping")
    assert served.recv(4) == b"ping"
    for each in (served, queued, late, sock):
        each.close()


@linux_only
def test_a_kernel_that_refuses_the_filter_does_not_stop_the_stop():
    # seccomp, gVisor or a small optmem_max can refuse SO_ATTACH_FILTER: the stop goes
    # on without it (the drain thread used to die there, and gunicorn never stopped).
    class NoFilters(socket.socket):
        def setsockopt(self, *args):  # type: ignore[no-untyped-def]
            raise OSError(92, "Protocol not available")

    sock = listener(NoFilters)
    assert refuse_new_connections(sock) is False
    sock.close()


def test_closing_answers_every_connection_already_queued():
    def answer(client: socket.socket, _address: object) -> None:
        client.recv(4)
        client.sendall(b"pong")

    # A gevent socket, as a gevent worker's listener is (its accept never blocks).
    server = StreamServer(listener(gevent.socket.socket), handle=answer, spawn=Pool())
    server.start()
    server.stop_accepting()  # so the connections below wait in the accept queue
    address = server.socket.getsockname()
    clients = [socket.create_connection(address, timeout=5) for _ in range(8)]
    for client in clients:
        client.sendall(b"ping")
    close_answering_the_backlog(server)
    assert server.closed
    assert server.pool.join(timeout=5)  # the handlers spawned for them run now
    assert [client.recv(4) for client in clients] == [b"pong"] * 8
    for client in clients:
        client.close()


def test_a_recycling_turn_never_handed_back_is_given_up_after_a_while(tmp_path, monkeypatch):
    """gunicorn.conf.py: one recycle at a time, but a lost one does not stop the rest."""
    import logging
    import runpy
    import time

    from tests.helpers import ROOT

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # so it sets none
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    logging.captureWarnings(False)  # the config routes warnings to logs; pytest wants them
    turn = config["_RECYCLING"]
    try:
        assert config["_take_recycling_turn"]() is True
        assert config["_take_recycling_turn"]() is False  # one at a time
        stale = time.monotonic() - config["RECYCLE_TURN_LIMIT"] - 1
        with open(turn, "w", encoding="ascii") as held:
            held.write(f"{stale!r} 1")
        assert config["_take_recycling_turn"]() is True  # the lost turn is taken over
        with open(turn, encoding="ascii") as taken:
            assert float(taken.read().split()[0]) > stale
    finally:
        config["on_exit"](None)


def test_the_worker_that_asked_to_recycle_is_the_one_the_master_stops(tmp_path, monkeypatch):
    """gunicorn.conf.py: TTOU makes the master stop its oldest worker; the one that took
    the recycling turn (which serves on without a request limit) is made the oldest."""
    import logging
    import os
    import runpy
    from types import SimpleNamespace

    from tests.helpers import ROOT

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    logging.captureWarnings(False)
    asking = os.getpid()  # the worker taking the turn is the process calling it
    workers = {101: SimpleNamespace(age=1), asking: SimpleNamespace(age=2)}
    workers[103] = SimpleNamespace(age=3)  # the replacement
    server = SimpleNamespace(WORKERS=workers)
    try:
        config["nworkers_changed"](server, 3, 2)  # TTIN: nothing to choose yet
        assert [w.age for w in workers.values()] == [1, 2, 3]
        assert config["_take_recycling_turn"]() is True
        config["nworkers_changed"](server, 2, 3)  # TTOU
        oldest = min(workers, key=lambda pid: workers[pid].age)
        assert oldest == asking
    finally:
        config["on_exit"](None)


class Recorder:
    """A socket that keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


def gunicorn_response(request: bytes, status: str, headers: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    """The response gunicorn's worker makes for `request`, writing into a Recorder."""
    from gunicorn.config import Config
    from gunicorn.http import wsgi
    from gunicorn.http.parser import RequestParser

    client, server = socket.socketpair()
    with client, server:
        client.sendall(request)
        config = Config()
        parsed = next(iter(RequestParser(config, server, ("127.0.0.1", 1))))
        sock = Recorder()
        response, _ = wsgi.create(parsed, sock, ("127.0.0.1", 1), ("127.0.0.1", 8080), config)
        response.start_response(status, headers)
        return response, sock


@pytest.mark.parametrize(
    ("request_line", "status", "headers", "chunks"),
    [
        (b"GET /v1/users/1", "200 OK", [("Content-Length", "5")], [b"hello"]),
        (b"GET /v1/users", "200 OK", [("Content-Length", "5")], [b"hel", b"lo"]),
        (b"GET /docs/", "200 OK", [], [b"hel", b"", b"lo"]),  # chunked
        (b"HEAD /v1/users/1", "200 OK", [("Content-Length", "5")], [b"hello"]),
        (b"GET /v1/users/1", "304 Not Modified", [("ETag", '"1"')], []),
    ],
)
def test_a_response_head_leaves_the_worker_with_its_first_body_bytes(
    monkeypatch, request_line, status, headers, chunks
):
    """gunicorn writes a response's head and its body in two sends. A worker killed
    between them (SIGKILL, the OOM killer) leaves a proxy a head without a body, which
    it can only pass on cut; whole or absent, it retries a GET on another replica."""
    from gunicorn import util
    from gunicorn.http import wsgi

    from serving import worker

    request = request_line + b" HTTP/1.1\r\nHost: users-api\r\n\r\n"
    monkeypatch.setattr(util, "http_date", lambda: "Sat, 05 Dec 2026 20:00:00 GMT")
    monkeypatch.setattr(util, "write_error", util.write_error)
    monkeypatch.setattr(wsgi, "Response", wsgi.Response)
    stock, stock_sock = gunicorn_response(request, status, headers)
    for chunk in chunks:
        stock.write(chunk)
    stock.close()
    expected = b"".join(stock_sock.writes)
    head = stock_sock.writes[0]
    assert head.endswith(b"\r\n\r\n")

    worker.use_in_this_process()  # as the worker does before it serves
    response, sock = gunicorn_response(request, status, headers)
    for chunk in chunks:
        response.write(chunk)
    response.close()

    assert b"".join(sock.writes) == expected
    if b"Content-Length: 5" in head and not request.startswith(b"HEAD"):
        assert sock.writes[0] == head + chunks[0]
    elif len(expected) > len(head):
        assert sock.writes[0] == head + b"3\r\nhel\r\n"
    else:
        assert sock.writes == [head]
