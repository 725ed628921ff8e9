"""Stopping without resetting a connection (serving/backlog.py), on real sockets."""

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
