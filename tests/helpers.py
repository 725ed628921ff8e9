"""What tests share: API keys, a migrated database, problem checks, gunicorn over TCP.

Test modules import from here (or use conftest's fixtures), never from each other.
"""

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import storage
from apikeys import new_key

ROOT = Path(__file__).resolve().parent.parent
PROBLEM = "application/problem+json"

# The services under test see only these keys' SHA-256 digests.
WRITE_KEY, WRITE_ENTRY = new_key("tester", "write")
READ_KEY, READ_ENTRY = new_key("reader", "read")
API_KEYS = f"{WRITE_ENTRY},{READ_ENTRY}"


def migrated(url: str) -> str:
    """The database at `url`, with the schema at the newest migration."""
    storage.migrate(url, wait=5.0, pooler="none")
    return url


def assert_problem(response, status):  # type: ignore[no-untyped-def]
    """An RFC 9457 problem document with this status; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank" and body["title"] and body["detail"]
    assert "Traceback" not in response.text
    return body


def parsed(out: str) -> list[dict]:  # type: ignore[type-arg]
    """Each JSON log line of `out` (blank lines skipped); fails if a line is not JSON."""
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict]:  # type: ignore[type-arg]
    """The log lines written to stdout since the last read."""
    return parsed(capsys.readouterr().out)


def plain_id(text: str) -> str:
    """A test id of ASCII letters and digits, anything else as U+XXXX. pytest cannot
    select an id holding a backslash by name (repr's "\\xa0"), and mutmut selects the
    tests it runs against each mutant by name."""
    return "".join(c if c.isascii() and c.isalnum() else f"U+{ord(c):04X}" for c in text) or "empty"


def user_count(client):  # type: ignore[no-untyped-def]
    return client.get("/v1").json()["user_count"]


def copy_the_service(destination: Path) -> None:
    """The checkout's own files (tracked, or new and not ignored), without its tests,
    benchmarks and deployment files: no virtualenvs, caches or mutants along."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if name.split("/", 1)[0] in ("tests", "bench", "deploy") or not source.is_file():
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def client(self, key: str | None = WRITE_KEY, **kwargs: object) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        kwargs.setdefault("timeout", 30)
        return httpx.Client(base_url=self.base_url, headers=headers, **kwargs)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def error_lines(self) -> list[str]:
        """Log lines at level error or worse, and any line that is not JSON (a traceback,
        a one-line start-up failure)."""
        bad = []
        for line in self.log().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                bad.append(line)
                continue
            if str(record.get("level", "")).lower() in ("error", "critical", "exception"):
                bad.append(line)
        return bad

    def wait_healthy(self, timeout: float = 60, path: str = "/healthz") -> None:
        """Poll `path` until it answers 200; stop the server and raise if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}{path}", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"gunicorn did not answer {path}:\n{self.log()}")

    def kill(self) -> int:
        """SIGKILL the master and its workers at once, as a container runtime would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


def start_gunicorn(
    tmp_path: Path,
    database_url: str,
    *,
    workers: int = 2,
    api_keys: str = API_KEYS,
    gunicorn: tuple[str, ...] = (sys.executable, "-m", "gunicorn"),
    **extra_env: str,
) -> LiveServer:
    """Start gunicorn exactly as deployed and wait until /healthz answers."""
    server = launch_gunicorn(
        tmp_path, database_url, workers=workers, api_keys=api_keys, gunicorn=gunicorn, **extra_env
    )
    server.wait_healthy()
    return server


def launch_gunicorn(
    tmp_path: Path,
    database_url: str,
    *,
    workers: int = 2,
    api_keys: str = API_KEYS,
    port: int | None = None,
    gunicorn: tuple[str, ...] = (sys.executable, "-m", "gunicorn"),
    **extra_env: str,
) -> LiveServer:
    """Start gunicorn exactly as deployed, in its own process group, without waiting.

    Several started at once race as replicas do; `port` lets a stopped one come back.
    `gunicorn` is the command that runs it: this venv's by default, another install's
    (tests/e2e) when the test is about what that install holds.
    """
    port = port or free_port()
    log_path = tmp_path / f"gunicorn-{port}.log"
    metrics_dir = tmp_path / f"metrics-{port}"
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": database_url,
        "WEB_CONCURRENCY": str(workers),
        "LOG_FORMAT": "json",
        "VALIDATE_RESPONSES": "true",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "API_KEYS": api_keys,
        # Stop without the drain period unless a test asks for one (tests/e2e/test_faults.py).
        "DRAIN_SECONDS": "0",
        **extra_env,
    }
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [*gunicorn, "-c", "gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return LiveServer(process, f"http://127.0.0.1:{port}", log_path, env)


@dataclass
class PgBouncer:
    """Debian's PgBouncer in front of one PostgreSQL database, on a free port."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def start_pgbouncer(
    tmp_path: Path, postgres_url: str, *, pool_mode: str = "transaction", pool_size: int = 10
) -> PgBouncer:
    """Start PgBouncer (`pool_mode`) for the database of `postgres_url`; its config and
    user list live in `tmp_path`. Trust auth, as the test server has."""
    import psycopg
    from sqlalchemy.engine import make_url

    target = make_url(postgres_url)
    port = free_port()
    config_dir = tmp_path / f"pgbouncer-{port}"
    config_dir.mkdir()
    (config_dir / "userlist.txt").write_text(f'"{target.username}" ""\n')
    (config_dir / "pgbouncer.ini").write_text(
        f"""[databases]
{target.database} = host={target.host or "127.0.0.1"} port={target.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {config_dir / "userlist.txt"}
pool_mode = {pool_mode}
default_pool_size = {pool_size}
max_client_conn = 500
; What many deployments add so clients that send startup options can connect at all:
; PgBouncer then drops them, lock_timeout in `options` included, without a word.
ignore_startup_parameters = extra_float_digits,options
"""
    )
    log_path = config_dir / "pgbouncer.log"
    command = ["pgbouncer", str(config_dir / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root; it reads its files first
        command[1:1] = ["-u", "postgres"]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    bouncer = PgBouncer(process, target.set(port=port).render_as_string(False), log_path)
    plain = target.set(port=port, drivername="postgresql").render_as_string(False)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {process.returncode}:\n{bouncer.log()}")
        try:
            with psycopg.connect(plain, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            return bouncer
        except psycopg.OperationalError:
            time.sleep(0.1)
    bouncer.stop()
    raise RuntimeError(f"pgbouncer did not answer:\n{bouncer.log()}")


@dataclass
class RedisServer:
    """A redis-server of the test's own, on a free port, that a test may stop, restart
    or freeze (never the shared one on 6379)."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        with (self.directory / f"redis-{self.port}.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case a test froze it
            self.process.terminate()
            self.process.wait(10)

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def start_redis(directory: Path) -> RedisServer:
    """A fresh redis-server (no persistence) on a free port."""
    return RedisServer(free_port(), directory).start()


def wsgi_environ(path: str, body: bytes = b"", **extra: str) -> dict:  # type: ignore[type-arg]
    """What gunicorn hands a WSGI app for one request (a2wsgi's build_scope reads it)."""
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "HTTP_X_API_KEY": WRITE_KEY,
        **extra,
    }


def call_wsgi(wsgi, environ):  # type: ignore[no-untyped-def]
    """(status line, headers, body) of one WSGI call."""
    started = []

    def start_response(status, headers, exc_info=None):  # type: ignore[no-untyped-def]
        started.append((status, headers))

    body = b"".join(wsgi(environ, start_response))
    [(status, headers)] = started
    return status, dict(headers), body


def asgi_request(headers=(), query=b""):  # type: ignore[no-untyped-def]
    """The ConnexionRequest a security check gets for a GET / with these headers."""
    from connexion.lifecycle import ConnexionRequest

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],  # as ASGI sends them
    }
    return ConnexionRequest(scope)


def settled(result):  # type: ignore[no-untyped-def]
    """A security check's answer, awaited (as connexion does) if it is awaitable."""
    import asyncio
    import inspect

    async def awaited(value):  # type: ignore[no-untyped-def]
        while inspect.isawaitable(value):
            value = await value
        return value

    return asyncio.run(awaited(result)) if inspect.isawaitable(result) else result


def report(request: pytest.FixtureRequest, topic: str, line: str) -> None:
    """Show a measured figure in pytest's output, past output capturing."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"{topic}: {line}")
