"""Failures that end in time: a stop, a frozen database, a slow body, recycled workers.

Each test runs the service as deployed (gunicorn with gevent workers, or `python -m serving
serve`) over TCP and checks that every request ends, with an answer, within a bound.
"""

import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

import storage
from tests.helpers import (
    API_KEYS,
    PROBLEM,
    ROOT,
    WRITE_KEY,
    LiveServer,
    free_port,
    migrated,
    report,
    start_gunicorn,
)

pytestmark = pytest.mark.live


def start_standalone(tmp_path: Path, database_url: str, **extra_env: str) -> LiveServer:
    """`python -m serving serve`, the one-process server, on a free port."""
    port = free_port()
    log_path = tmp_path / f"serve-{port}.log"
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": database_url,
        "API_KEYS": API_KEYS,
        "LOG_FORMAT": "json",
        **extra_env,
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving", "serve"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(process, f"http://127.0.0.1:{port}", log_path, env)
    server.wait_healthy()
    return server


def access_lines(server: LiveServer) -> list[dict[str, object]]:
    lines = []
    for raw in server.log().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line.get("logger") == "users_api.access":
            lines.append(line)
    return lines


# 3. A graceful stop resets no connection ------------------------------------------------


def create_on_a_new_connection(http: httpx.Client, i: int) -> tuple[str, int | None]:
    """POST one user on a connection of its own: ("201", id), ("refused", None), or what
    else happened ("reset", "dropped", another status)."""
    try:
        response = http.post("/v1/users", json={"name": f"user {i}", "age": i % 140})
    except httpx.ConnectError:
        return "refused", None  # no connection: the request never reached the service
    except (httpx.ReadError, httpx.WriteError):
        return "reset", None
    except httpx.RemoteProtocolError:
        return "dropped", None  # accepted, then closed without an answer
    except httpx.TimeoutException:
        return "timed out", None  # accepted (or queued), never answered in time
    if response.status_code == 201:
        return "201", response.json()["id"]
    return str(response.status_code), None


def creates_across_a_sigterm(server: LiveServer, clients: int = 16) -> list[tuple[str, int]]:
    """`clients` threads create users on new connections; after 100 answers the service
    gets SIGTERM; each thread goes on until the service refuses its connection."""
    results: list[tuple[str, int | None]] = []
    lock = threading.Lock()
    counter = iter(range(10**6))
    answered = threading.Event()

    def client() -> None:
        # No keep-alive: every request opens a connection of its own.
        http = server.client(limits=httpx.Limits(max_keepalive_connections=0))
        while True:
            with lock:
                i = next(counter)
            outcome = create_on_a_new_connection(http, i)
            with lock:
                results.append(outcome)
                if len(results) >= 100:
                    answered.set()
            if outcome[0] == "refused":
                http.close()
                return

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    assert answered.wait(60)
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(90)
    assert server.process.wait(60) == 0
    return results  # type: ignore[return-value]


@pytest.mark.parametrize("how", ["gunicorn, 1 worker", "gunicorn, 2 workers", "serve"])
def test_a_graceful_stop_answers_every_connection_it_accepted(tmp_path, sqlite_url, how):
    url = migrated(sqlite_url)
    for round_ in range(3):
        if how == "serve":
            server = start_standalone(tmp_path, url, DRAIN_SECONDS="2")
        else:
            server = start_gunicorn(tmp_path, url, workers=int(how[10]), DRAIN_SECONDS="2")
        results = creates_across_a_sigterm(server)
        outcomes = Counter(outcome for outcome, _ in results)
        assert set(outcomes) <= {"201", "refused"}, (round_, outcomes)
        assert len(results) >= 200, outcomes
        engine = storage.make_engine(url)
        with engine.connect() as conn:
            stored = set(conn.execute(sa.text("SELECT id FROM users")).scalars())
        engine.dispose()
        assert {user_id for outcome, user_id in results if outcome == "201"} <= stored


@pytest.mark.parametrize("how", ["gunicorn", "serve"])
def test_readiness_fails_at_once_on_sigterm_while_requests_are_still_served(
    tmp_path, sqlite_url, how
):
    url = migrated(sqlite_url)
    if how == "serve":
        server = start_standalone(tmp_path, url, DRAIN_SECONDS="3")
    else:
        server = start_gunicorn(tmp_path, url, workers=2, DRAIN_SECONDS="3")
    try:
        assert httpx.get(f"{server.base_url}/readyz").status_code == 200
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        not_ready = None
        while not_ready is None and time.monotonic() - signalled < 1:
            # New connections each time: both workers must say so.
            response = httpx.get(f"{server.base_url}/readyz", timeout=5)
            if response.status_code == 503:
                not_ready = response
        assert not_ready is not None, "/readyz still 200 a second after SIGTERM"
        assert not_ready.headers["content-type"] == PROBLEM
        assert int(not_ready.headers["retry-after"]) >= 1
        # Still serving in the drain period, on new connections.
        for _ in range(10):
            created = httpx.post(
                f"{server.base_url}/v1/users",
                json={"name": "Ada", "age": 36},
                headers={"X-API-Key": WRITE_KEY},
                timeout=5,
            )
            assert created.status_code == 201
        assert time.monotonic() - signalled < 3
        assert server.process.wait(30) == 0
        assert time.monotonic() - signalled >= 3
    finally:
        server.stop()


# 4. A database that stops answering: 503 within DB_TIMEOUT -------------------------------

PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


def as_postgres_user(command: list[str]) -> list[str]:
    """initdb refuses root: as root, run the server's tools as the `postgres` user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of this test's own (initdb into a temporary directory), which the
    test may freeze. Yields its URL and its postmaster's pid."""
    if not PG_BIN:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    bin_dir = PG_BIN[-1].parent
    data_dir = Path(tempfile.mkdtemp(prefix="users-api-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
    port = free_port()
    initdb = [str(bin_dir / "initdb"), "-D", str(data_dir / "data"), "-U", "postgres"]
    subprocess.run(
        as_postgres_user([*initdb, "-A", "trust", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data_dir / "data")]
    subprocess.run(
        as_postgres_user([*pg_ctl, "-o", options, "-l", str(data_dir / "log"), "-w", "start"]),
        check=True,
        capture_output=True,
    )
    postmaster = int((data_dir / "data" / "postmaster.pid").read_text().split()[0])
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", postmaster
    finally:
        thaw(postmaster)
        subprocess.run(as_postgres_user([*pg_ctl, "-m", "immediate", "stop"]), check=False)
        shutil.rmtree(data_dir, ignore_errors=True)


def server_processes(postmaster: int) -> list[int]:
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    return [postmaster, *map(int, children)]


def freeze(postmaster: int) -> None:
    for pid in server_processes(postmaster):
        os.kill(pid, signal.SIGSTOP)


def thaw(postmaster: int) -> None:
    for pid in server_processes(postmaster):
        os.kill(pid, signal.SIGCONT)


def timed(http: httpx.Client, method: str, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    try:
        response = http.request(method, path, **kwargs)  # type: ignore[arg-type]
    except httpx.TimeoutException:
        return None, time.monotonic() - started
    return response, time.monotonic() - started


def test_a_frozen_database_gives_503_within_db_timeout_and_recovers(tmp_path, own_postgres):
    url, postmaster = own_postgres
    db_timeout = 2.0
    server = start_gunicorn(
        tmp_path, migrated(url), workers=1, DB_TIMEOUT=str(db_timeout), DB_POOL_SIZE="4"
    )
    calls = [
        ("GET", "/v1/users/1", {}),
        ("GET", "/v1/users", {}),
        ("GET", "/v1", {}),
        ("POST", "/v1/users", {"json": {"name": "Bo", "age": 9}}),
        ("GET", "/readyz", {}),
    ] * 4
    try:
        with server.client(timeout=db_timeout + 10) as http:
            created = http.post("/v1/users", json={"name": "Ada", "age": 36})
            assert created.status_code == 201
            # Some pooled connections, idle and ready, before the freeze.
            with ThreadPoolExecutor(8) as pool:
                warm = list(pool.map(lambda _: http.get("/v1/users/1").status_code, range(16)))
            assert warm == [200] * 16
            freeze(postmaster)
            with ThreadPoolExecutor(len(calls)) as pool:
                frozen = list(pool.map(lambda call: timed(http, *call[:2], **call[2]), calls))
            thaw(postmaster)
            for (method, path, _), (response, seconds) in zip(calls, frozen, strict=True):
                assert response is not None, f"{method} {path}: no answer in {seconds:.1f} s"
                assert response.status_code == 503, (method, path, response.text)
                assert response.headers["content-type"] == PROBLEM
                assert response.headers["retry-after"]
                assert seconds <= db_timeout + 1, f"{method} {path}: {seconds:.2f} s"
            # Back without a restart, and no pooled connection is left broken.
            deadline = time.monotonic() + 10
            while http.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "not ready again 10 s after the thaw"
                time.sleep(0.1)
            with ThreadPoolExecutor(8) as pool:
                after = list(pool.map(lambda _: http.get("/v1/users/1").status_code, range(40)))
            assert after == [200] * 40
            assert http.post("/v1/users", json={"name": "Cy", "age": 1}).status_code == 201
    finally:
        thaw(postmaster)
        assert server.stop() == 0


# 5. Slow bodies end ---------------------------------------------------------------------


def trickle_bodies(
    port: int, count: int, seconds: float
) -> tuple[dict[int, bytes], dict[int, float], dict[int, float]]:
    """`count` connections each declare a 1000-byte body and send one byte every 0.2 s
    for at most `seconds`. Returns what each received, and when (seconds from the
    start) its answer began and the server closed it."""
    head = (
        "POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {WRITE_KEY}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(head + b"{")
        sockets.append(sock)
    started = time.monotonic()
    received = {i: b"" for i in range(count)}
    answered: dict[int, float] = {}
    closed: dict[int, float] = {}
    open_ = set(range(count))
    selector = selectors.DefaultSelector()
    for i, sock in enumerate(sockets):
        selector.register(sock, selectors.EVENT_READ, i)
    deadline = time.monotonic() + seconds
    next_byte = time.monotonic()
    while open_ and time.monotonic() < deadline:
        if time.monotonic() >= next_byte:
            for i in list(open_):
                try:
                    sockets[i].send(b" ")
                except OSError:
                    open_.discard(i)
            next_byte += 0.2
        for key, _ in selector.select(timeout=0.05):
            i = key.data
            try:
                chunk = sockets[i].recv(65536)
            except OSError:
                chunk = b""
            received[i] += chunk
            if chunk:
                answered.setdefault(i, time.monotonic() - started)
            else:
                closed[i] = time.monotonic() - started
                selector.unregister(sockets[i])
                open_.discard(i)
    for sock in sockets:
        sock.close()
    return received, answered, closed


def test_a_slow_body_ends_in_408_and_others_are_served_meanwhile(tmp_path, sqlite_url):
    """408 once BODY_TIMEOUT is up; gunicorn then closes the connection once its
    keep-alive time (5 s) has passed without a next request (it does not act on the
    app's Connection: close)."""
    body_timeout, keepalive = 2.0, 5.0
    server = start_gunicorn(tmp_path, migrated(sqlite_url), workers=1, BODY_TIMEOUT="2")
    port = int(server.base_url.rsplit(":", 1)[1])
    try:
        served: list[float] = []

        def others() -> None:
            with server.client() as http:
                while len(served) < 20:
                    started = time.monotonic()
                    assert http.post("/v1/users", json={"name": "Ada", "age": 1}).status_code == 201
                    served.append(time.monotonic() - started)
                    time.sleep(0.1)

        other = threading.Thread(target=others)
        other.start()
        received, answered, closed = trickle_bodies(port, 50, body_timeout + keepalive + 5)
        other.join(30)
        assert len(served) == 20 and max(served) < 1, served
        unanswered = 50 - len(answered)
        assert not unanswered, f"{unanswered} of 50 slow bodies unanswered"
        assert max(answered.values()) < body_timeout + 1, answered
        assert len(closed) == 50 and max(closed.values()) < body_timeout + keepalive + 2
        for data in received.values():
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), head
            assert f"content-type: {PROBLEM}".encode() in head.lower()
            problem = json.loads(body)
            assert problem["status"] == 408 and problem["request_id"]
            assert b"x-request-id: " + problem["request_id"].encode() in head.lower()
        timed_out = [line for line in access_lines(server) if line["status"] == 408]
        assert len(timed_out) == 50
    finally:
        assert server.stop() == 0


# 6. Worker recycling never stalls the service --------------------------------------------


def recycling_workers_alive(log: str) -> set[int]:
    """The pids that asked to be recycled and have not exited."""
    asked, exited = set(), set()
    for line in log.splitlines():
        if "recycling: asking for a new worker" in line:
            asked.add(json.loads(line)["pid"])
        elif found := re.search(r"Worker exiting \(pid: (\d+)\)", line):
            exited.add(int(found[1]))
    return asked - exited


def test_recycling_workers_never_stalls_a_request(tmp_path, sqlite_url, request):
    server = start_gunicorn(tmp_path, migrated(sqlite_url), workers=2, MAX_REQUESTS="150")
    try:
        # Recycling is the subject, not start-up: both workers up before the load begins.
        deadline = time.monotonic() + 60
        while server.log().count("worker booted in") < 2:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        with server.client() as http:
            user = http.post("/v1/users", json={"name": "Ada", "age": 36}).json()
        latencies: list[tuple[float, str, int, str]] = []
        stop = time.monotonic() + 20

        def steady(path: str) -> None:
            # One request every 40 ms per client: about 100 requests a second in all.
            with server.client(timeout=30) as http:
                next_at = time.monotonic()
                while next_at < stop:
                    started, at = time.monotonic(), time.strftime("%H:%M:%S")
                    status = http.get(path).status_code
                    latencies.append((time.monotonic() - started, path, status, at))
                    next_at += 0.04
                    time.sleep(max(0.0, next_at - time.monotonic()))

        paths = [f"/v1/users/{user['id']}", "/v1/users", "/healthz", "/v1"]
        with ThreadPoolExecutor(len(paths)) as pool:
            list(pool.map(steady, paths))
        recycled = server.log().count("recycling: asking for a new worker")
        boots = [float(t) for t in re.findall(r"worker booted in ([0-9.]+) s", server.log())]
        report(
            request,
            "recycling",
            f"{recycled} recycles, {len(latencies)} requests, slowest"
            f" {max(latency[0] for latency in latencies) * 1000:.0f} ms; workers booted in"
            f" {', '.join(f'{t:.2f}' for t in boots)} s",
        )
        slow = sorted(latency for latency in latencies if latency[0] > 1)
        errors = [latency for latency in latencies if latency[2] != 200]
        assert not errors, errors[:5]
        assert not slow, f"{len(slow)} of {len(latencies)} over 1 s: {slow[-5:]}"
        story = [
            line
            for line in server.log().splitlines()
            if "recycl" in line
            or "ttin" in line.lower()
            or "ttou" in line.lower()
            or "booted" in line
        ]
        assert recycled >= 2, f"only {recycled} recycles in {len(latencies)} requests: {story}"
        # Each worker that asked is the one that went (its keep-alive clients with it),
        # not another in its place: it serves on without a request limit otherwise.
        deadline = time.monotonic() + 15
        while (left := recycling_workers_alive(server.log())) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"workers {left} asked to be recycled but still serve: {story}"
    finally:
        assert server.stop() == 0
