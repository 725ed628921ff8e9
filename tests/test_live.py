"""The service as deployed: gunicorn with gevent workers over TCP, real databases, signals."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

import storage
from tests.helpers import (
    API_KEYS,
    ROOT,
    LiveServer,
    assert_problem,
    copy_the_service,
    free_port,
    migrated,
    start_gunicorn,
)

pytestmark = pytest.mark.live


def many_clients(server, count):
    return server.client(
        timeout=60, limits=httpx.Limits(max_connections=count, max_keepalive_connections=count)
    )


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    """gunicorn with a single worker, whose memory and time the tests below measure."""
    tmp_path = tmp_path_factory.mktemp("one-worker")
    server = start_gunicorn(tmp_path, migrated(f"sqlite:///{tmp_path}/users.sqlite3"), workers=1)
    yield server
    server.stop()


@pytest.fixture
def seeded_postgres(postgres_url):
    engine = storage.make_engine(migrated(postgres_url))
    user = storage.UserStore(engine).create(name="Ada", age=36)
    yield postgres_url, user.id, engine
    engine.dispose()


@pytest.fixture
def table_lock(seeded_postgres):
    """Hold an exclusive lock on users: every query on it waits until release()."""
    _url, _user_id, engine = seeded_postgres
    conn = engine.connect()
    conn.execute(sa.text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
    yield conn.rollback
    conn.close()


def create_100_at_once(server):
    with many_clients(server, 100) as http, ThreadPoolExecutor(100) as pool:
        responses = list(
            pool.map(
                lambda i: http.post("/v1/users", json={"name": f"user {i}", "age": i % 140}),
                range(100),
            )
        )
        assert [r.status_code for r in responses] == [201] * 100
        ids = {r.json()["id"] for r in responses}
        assert len(ids) == 100
        listed = http.get("/v1/users", params={"limit": 100}).json()
        assert listed["count"] == 100
        assert {user["id"] for user in listed["items"]} == ids


def test_100_concurrent_creates_through_several_workers_are_all_kept(live_server, live_client):
    create_100_at_once(live_server)


@pytest.mark.postgres
def test_100_concurrent_creates_on_postgresql_are_all_kept(tmp_path, postgres_url):
    server = start_gunicorn(tmp_path, postgres_url, workers=3)
    try:
        create_100_at_once(server)
    finally:
        assert server.stop() == 0


def requests_counted(server, operation):
    with server.client() as http:
        text = http.get("/metrics").text
    prefix = f'http_requests_total{{method="GET",operation="{operation}",status="200"}}'
    samples = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(samples) <= 1, text
    return float(samples[0].split()[-1]) if samples else 0.0


def test_metrics_add_up_across_workers(live_server, live_client):
    before = requests_counted(live_server, "user_page")
    log_lines = len(live_server.log().splitlines())
    # Which worker accepts a connection is the kernel's choice; one may take a whole
    # batch. Send batches on fresh connections until both have answered some.
    sent = 0
    deadline = time.monotonic() + 30
    while len(served_by(live_server, "/v1/users", since=log_lines)) < 2:
        assert time.monotonic() < deadline, f"one worker answered all {sent} requests"
        with many_clients(live_server, 20) as http, ThreadPoolExecutor(20) as pool:
            assert set(pool.map(lambda _: http.get("/v1/users").status_code, range(20))) == {200}
        sent += 20
    # Both workers answered some, so the total really is a sum across processes.
    assert requests_counted(live_server, "user_page") - before == sent


def test_run_prints_only_json_lines(live_server, live_client):
    http = live_client
    ui = http.get("/v1/ui/swagger-ui-bundle.js")  # served through the event-loop path
    assert ui.status_code == 200 and len(ui.content) > 100_000
    response = http.get("/v1/nowhere", headers={"X-Request-ID": "grep-me-123"})
    assert response.headers["x-request-id"] == "grep-me-123"
    http.post("/v1/users", json={"name": "Ada", "age": 36}, headers={"X-Request-ID": "grep-me-456"})
    lines = [json.loads(line) for line in live_server.log().splitlines()]  # every line parses
    assert any("gevent" in line["event"] for line in lines if line["logger"] == "gunicorn.error")
    mine = [line for line in lines if line.get("request_id") == "grep-me-456"]
    assert {line["event"] for line in mine} == {"user created", "request"}
    assert [line["status"] for line in lines if line.get("request_id") == "grep-me-123"] == [404]


@pytest.mark.postgres
def test_one_worker_serves_200_requests_waiting_on_the_database_at_once(
    tmp_path, seeded_postgres, table_lock
):
    """psycopg 3 cooperates with gevent: queries blocked in PostgreSQL block no other request."""
    url, user_id, _engine = seeded_postgres
    # DB_TIMEOUT long enough that the lock, not a timeout, decides when they finish.
    server = start_gunicorn(
        tmp_path, url, workers=1, DB_POOL_SIZE="50", DB_MAX_OVERFLOW="0", DB_TIMEOUT="120"
    )
    try:
        with many_clients(server, 200) as http, ThreadPoolExecutor(200) as pool:
            waiting = [pool.submit(http.get, f"/v1/users/{user_id}") for _ in range(200)]
            time.sleep(1.5)
            # 200 requests are stuck behind the lock, 50 of them inside PostgreSQL...
            assert not any(future.done() for future in waiting)
            # ...and the same single worker still answers at once (on a connection of its own).
            started = time.monotonic()
            assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
            assert time.monotonic() - started < 0.5
            table_lock()
            statuses = [future.result().status_code for future in waiting]
        assert statuses == [200] * 200
    finally:
        server.stop()


@pytest.mark.postgres
def test_sigterm_finishes_every_request_in_flight(tmp_path, seeded_postgres, table_lock):
    url, user_id, _engine = seeded_postgres
    server = start_gunicorn(
        tmp_path, url, workers=2, DB_POOL_SIZE="20", DB_MAX_OVERFLOW="0", DB_TIMEOUT="120"
    )
    with many_clients(server, 120) as http, ThreadPoolExecutor(120) as pool:
        in_flight = [pool.submit(http.get, f"/v1/users/{user_id}") for _ in range(120)]
        time.sleep(1.5)
        assert not any(future.done() for future in in_flight)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        table_lock()
        responses = [future.result() for future in in_flight]
    assert [r.status_code for r in responses] == [200] * 120
    assert all(r.json()["id"] == user_id for r in responses)
    assert server.process.wait(30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base_url}/healthz", timeout=2)


def worker_pids(master_pid):
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return {int(pid) for pid in children}


def served_by(server, path=None, since=0):
    """The pids of the workers whose access lines are in the log (for `path`, if given),
    from its line `since` on."""
    return {
        line["pid"]
        for line in map(json.loads, server.log().splitlines()[since:])
        if line.get("logger") == "users_api.access" and path in (None, line["path"])
    }


def test_a_killed_worker_is_replaced_and_service_goes_on(tmp_path, sqlite_url):
    server = start_gunicorn(tmp_path, sqlite_url, workers=2)
    try:
        before = worker_pids(server.process.pid)
        assert len(before) == 2
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        with server.client() as http:
            for _ in range(50):
                assert http.get("/healthz").status_code == 200
        # The replacement boots and takes its share of new connections.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            replacements = worker_pids(server.process.pid) - before
            if replacements and replacements <= served_by(server):
                break
            httpx.get(f"{server.base_url}/healthz", timeout=5)
        assert len(worker_pids(server.process.pid)) == 2
        assert victim not in worker_pids(server.process.pid)
        assert replacements and replacements <= served_by(server)
    finally:
        assert server.stop() == 0


def run_gunicorn_until_exit(cwd, **env):
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=cwd,
        env={**os.environ, "PORT": "0", "API_KEYS": API_KEYS, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("database_url", "message"),
    [
        ("mysql://root@127.0.0.1/test", "DatabaseURLError"),
        ("postgresql://postgres@127.0.0.1:1/nowhere", "OperationalError"),
        ("sqlite:////proc/not-writable/users.sqlite3", "FileNotFoundError"),
    ],
)
def test_start_up_fails_fast_with_one_line_for_a_bad_database(database_url, message):
    result = run_gunicorn_until_exit(ROOT, DATABASE_URL=database_url)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_production_start_without_keys_refuses(sqlite_url):
    result = run_gunicorn_until_exit(ROOT, DATABASE_URL=sqlite_url, API_KEYS="")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert len(errors) == 1 and "API_KEYS" in errors[0], result.stderr


def test_start_up_fails_fast_for_a_malformed_spec(tmp_path, sqlite_url):
    copy = tmp_path / "service"
    copy_the_service(copy)
    (copy / "openapi.yaml").write_text(
        (copy / "openapi.yaml").read_text().replace("openapi: 3.0.3", "openapi: banana")
    )
    result = run_gunicorn_until_exit(copy, DATABASE_URL=sqlite_url)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_the_standalone_gevent_server_serves_and_stops_gracefully(tmp_path, sqlite_url):
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "PORT": str(port), "DATABASE_URL": sqlite_url, "API_KEYS": API_KEYS}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving", "serve"],
            cwd=ROOT,
            env={**env, "LOG_FORMAT": "json"},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(process, f"http://127.0.0.1:{port}", log_path, env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{server.base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        with server.client() as http:
            created = http.post("/v1/users", json={"name": "Ada", "age": 36})
            assert created.status_code == 201
            assert http.get(created.headers["location"]).json() == created.json()
    finally:
        assert server.stop() == 0
    lines = [json.loads(line) for line in server.log().splitlines()]
    assert lines[-1]["event"] == "stopped"


def rss_kib(pid, field="VmRSS"):
    """A process's resident memory now (VmRSS) or at its peak (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


def test_memory_stays_flat_under_a_stream_of_10_mb_bodies(one_worker):
    (worker,) = worker_pids(one_worker.process.pid)
    ten_mb = b"x" * (10 * 1024 * 1024)
    headers = {"Content-Type": "application/json"}
    with one_worker.client() as http:
        http.post("/v1/users", content=ten_mb, headers=headers)  # warm-up
        before = rss_kib(worker)
        for _ in range(10):
            declared = http.post("/v1/users", content=ten_mb, headers=headers)
            chunked = http.post(
                "/v1/users", content=iter([ten_mb[: 1 << 20]] * 10), headers=headers
            )
            assert declared.status_code == chunked.status_code == 413
    growth_mib = (rss_kib(worker) - before) / 1024
    assert growth_mib < 16, f"worker grew {growth_mib:.1f} MiB over 200 MB of bodies"


@pytest.mark.parametrize(
    ("target", "expected"),
    [(b"/v1/users/%ff", 401), (b"/%ff", 404), (b"/v1/ui/%ff", 404)],
    ids=["path-param-no-key", "unrouted", "swagger-ui"],
)
def test_undecodable_targets_get_a_problem_not_an_html_500(live_server, target, expected):
    """A path that is not UTF-8 once decoded. (gunicorn itself refuses raw bytes > 127.)"""
    port = int(live_server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert status == expected, answer[:300]
    assert b"content-type: application/problem+json" in head.lower()
    assert b"x-request-id: " in head.lower()
    assert json.loads(body)["status"] == status


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"GET /v1/users?" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n", 414),
        (b"GET /v1/users HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 101, 431),
        (b"GET /v1/users HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n", 431),
        (b"NOT AN HTTP REQUEST\r\n", 400),
    ],
    ids=["long-request-line", "too-many-headers", "long-header", "garbage"],
)
def test_what_gunicorn_refuses_itself_is_a_problem_document_too(live_server, request_head, status):
    port = int(live_server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_head + b"\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert int(head.split()[1]) == status, answer[:300]
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    assert headers[b"Content-Type"] == b"application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert problem["request_id"] == headers[b"X-Request-ID"].decode()
    assert len(problem["detail"]) <= 200  # the client's bytes are not echoed whole


def test_a_large_body_on_a_get_is_refused_before_it_is_buffered(one_worker):
    """The body limit holds for every method: a GET's body is read too, by the bridge."""
    (worker,) = worker_pids(one_worker.process.pid)
    with one_worker.client() as http:
        user = http.post("/v1/users", json={"name": "Ada", "age": 36}).json()
        before = rss_kib(worker, "VmHWM")
        fifty_mb = b"x" * (50 * 1024 * 1024)
        response = http.request("GET", f"/v1/users/{user['id']}", content=fifty_mb)
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        # A small body on a GET means nothing and is ignored, as before.
        assert http.request("GET", f"/v1/users/{user['id']}", content=b"{}").status_code == 200
    growth_mib = (rss_kib(worker, "VmHWM") - before) / 1024
    assert growth_mib < 16, f"worker's peak grew {growth_mib:.1f} MiB for a 50 MB GET body"


def test_a_user_lifecycle_over_http(live_client):
    """What gunicorn and the bridge add to the in-process tests: real framing of every
    kind of answer (201, 304 and 204 without a body, HEAD, problems, 405 with Allow)."""
    http = live_client
    created = http.post("/v1/users", json={"name": "张三", "age": 30})
    assert created.status_code == 201
    assert created.headers["etag"] == '"1"'
    location = created.headers["location"]
    assert http.get(location).json() == created.json()
    not_modified = http.get(location, headers={"If-None-Match": '"1"'})
    assert (not_modified.status_code, not_modified.content) == (304, b"")
    head = http.head(location)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["etag"] == '"1"'
    replaced = http.put(location, json={"name": "Ada", "age": 36}, headers={"If-Match": '"1"'})
    assert (replaced.status_code, replaced.json()["name"]) == (200, "Ada")
    stale = http.patch(
        location,
        content=b'{"age": 37}',
        headers={"If-Match": '"1"', "Content-Type": "application/merge-patch+json"},
    )
    assert_problem(stale, 412)
    refused = http.post(location, json={})
    assert_problem(refused, 405)
    assert refused.headers["allow"] == "GET, PUT, PATCH, DELETE, HEAD"
    http.post("/v1/users", json={"name": "Eve", "age": 5})
    page = http.get("/v1/users", params={"limit": 1})
    assert page.json()["count"] == 2
    assert page.headers["link"] == f'</v1/users?limit=1&after={created.json()["id"]}>; rel="next"'
    deleted = http.delete(location, headers={"If-Match": '"2"'})
    assert (deleted.status_code, deleted.content) == (204, b"")
    gone = http.get(location)
    assert assert_problem(gone, 404)["request_id"] == gone.headers["x-request-id"]


def test_slow_clients_cannot_hold_the_worker(one_worker):
    """50 clients that trickle a request line never finish it; others are still served."""
    port = int(one_worker.base_url.rsplit(":", 1)[1])
    slow = []
    try:
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /v1/users HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(sock)
        started = time.monotonic()
        with one_worker.client() as http:
            for _ in range(20):
                assert http.get("/v1/users").status_code == 200
        assert time.monotonic() - started < 5
    finally:
        for sock in slow:
            sock.close()
