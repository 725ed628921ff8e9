"""Instructions per request: each contender's app called in one process, under callgrind.

    .venv/bin/python -m bench.instructions users-api get     # one contender, one workload
    .venv/bin/python -m bench.instructions users-api         # its four workloads
    .venv/bin/python -m bench.instructions                   # every contender and workload
    BENCH_DATABASES=postgres .venv/bin/python -m bench.instructions users-api get

Unlike req/s on a shared machine, the count barely moves between runs: it is the figure
to compare two versions of the request path by. Method (bench/README.md has more): one
process runs whole under `valgrind --tool=callgrind --collect-atstart=yes`, on a fresh
copy of the seeded database, and builds the contender's app as `make bench` serves it.
For each workload it then forks twice, one child after the other; each child sends
WARMUP requests, then N (the first) or N+400 (the second) requests of the workload, and
exits. Callgrind writes each child's total; (second - first) / 400 is the cost of one
request: start-up, warm-up and exit cancel out, and both start from the same state.
WSGI apps are called with an environ; ASGI apps with a scope on a plain asyncio loop,
after the lifespan start-up uvicorn would send. No HTTP, no server, no gevent: this
measures the app stack, not the server.

BENCH_CALLGRIND_DIR=dir keeps both runs' callgrind files (for callgrind_annotate), and
with PYTHONPERFSUPPORT=1 (Python 3.12+) the perf maps that name Python functions in them:
bench/profile.py turns those into instructions per request by layer.
"""

import asyncio
import gc
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXTRA = 400  # the difference between the two runs' request counts
WARMUP = int(os.environ.get("BENCH_INSTRUCTIONS_WARMUP", "100"))
BASE = int(os.environ.get("BENCH_INSTRUCTIONS_BASE", "100"))
# Contenders counted at once: a count does not depend on how busy the CPUs are.
JOBS = int(os.environ.get("BENCH_INSTRUCTIONS_JOBS", "2"))
CONNEXION2_PYTHON = ROOT / "bench" / ".venv-connexion2" / "bin" / "python"

WORKLOADS = ("get", "list", "put", "post")


@dataclass(frozen=True)
class App:
    """Where a contender's app lives, how it is called, and which Python runs it."""

    target: str  # module:attribute
    interface: str  # wsgi | asgi
    python: Path | None = None  # None: this environment's
    env: tuple[tuple[str, str], ...] = ()  # settings of its own


# users-api with rate limits on every policy, counted in Redis (.ci/run starts one on
# 6379) and not reached at bench rates: the row says what limiting costs a request. Not
# higher: the moving window keeps one Redis list entry per hit up to the quota, and a
# quota of millions bills a list no real setting would grow.
LIMITS_ON = (
    ("RATE_LIMITS", "read=10000/second,write=10000/second,unknown=10000/second"),
    ("RATE_LIMIT_STORAGE", "redis://127.0.0.1:6379/15"),
)


# The same apps bench/run.py serves (users-api's as gunicorn.conf.py names it).
APPS = {
    "users-api": App("app:wsgi", "wsgi"),
    "users-api-limits": App("app:wsgi", "wsgi", env=LIMITS_ON),
    "connexion2": App("bench.contenders.connexion2_app:app", "wsgi", CONNEXION2_PYTHON),
    "connexion3": App("bench.contenders.connexion3_app:app", "asgi"),
    "fastapi-full": App("bench.contenders.fastapi_full:app", "asgi"),
    "fastapi": App("bench.contenders.fastapi_app:app", "asgi"),
    "plain-flask": App("bench.contenders.plain_flask:app", "wsgi"),
    "raw-wsgi": App("bench.contenders.raw_wsgi:app", "wsgi"),
}


@dataclass(frozen=True)
class Count:
    contender: str
    workload: str
    database: str
    base_total: int  # instructions of the run with BASE requests
    more_total: int  # ... with BASE + EXTRA
    per_request: float


def main(argv: list[str]) -> int:
    if argv[:1] == ["--forks"]:
        return _forks(argv[1], argv[2].split(","), Path(argv[3]))
    contenders = [a for a in argv if a in APPS] or list(APPS)
    workloads = [a for a in argv if a in WORKLOADS] or list(WORKLOADS)
    if unknown := set(argv) - set(APPS) - set(WORKLOADS):
        print(f"unknown {sorted(unknown)}: contenders {list(APPS)}, workloads {WORKLOADS}")
        return 2
    if not shutil.which("valgrind"):
        print("bench.instructions needs valgrind (Debian: apt-get install valgrind)")
        return 2
    from bench.databases import seeded

    for database in os.environ.get("BENCH_DATABASES", "sqlite").split(","):
        with seeded(database) as fresh_copy:
            if fresh_copy is None:
                print(f"{database}: no server to measure on")
                continue
            for result in measure(contenders, workloads, database, fresh_copy):
                print(line(result), flush=True)
    return 0


def line(result: Count) -> str:
    return (
        f"{result.contender:12} {result.workload:4} {result.database:8}"
        f" {result.per_request / 1e6:6.3f} M instructions per request"
        f" ({BASE} requests: {result.base_total:,}; {BASE + EXTRA}: {result.more_total:,})"
    )


def measure(
    contenders: list[str], workloads: list[str], database: str, fresh_copy: Any
) -> list[Count]:
    """JOBS contenders at a time, each in its own valgrind."""
    with ThreadPoolExecutor(JOBS) as pool:
        each = pool.map(lambda c: count(c, workloads, database, fresh_copy), contenders)
        return [result for results in each for result in results]


def count(contender: str, workloads: list[str], database: str, fresh_copy: Any) -> list[Count]:
    from apikeys import new_key

    key, entry = new_key("bench", "write")
    url, first, last = fresh_copy(f"instructions_{contender}")
    app = APPS[contender]
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "PYTHONHASHSEED": "0",
            # Python 3.12+: a trampoline per Python function, named in /tmp/perf-PID.map
            "PYTHONPERFSUPPORT": os.environ.get("PYTHONPERFSUPPORT", ""),
            "DATABASE_URL": url,
            "API_KEYS": entry,
            "BENCH_API_KEY": key,
            "BENCH_FIRST_ID": str(first),
            "BENCH_LAST_ID": str(last),
            # As deployed: JSON lines (to /dev/null here), metrics in multiprocess files,
            # no response validation.
            "LOG_FORMAT": "json",
            "PROMETHEUS_MULTIPROC_DIR": tmp,
            "VALIDATE_RESPONSES": "false",
            **dict(app.env),
        }
        out = Path(tmp)
        command = [
            "valgrind", "--tool=callgrind", "--collect-atstart=yes",
            f"--callgrind-out-file={out}/callgrind.%p.out", f"--log-file={out}/valgrind.%p.log",
            str(app.python or sys.executable), "-m", "bench.instructions",
            "--forks", contender, ",".join(workloads), str(out / "children.json"),
        ]  # fmt: skip
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        logs = "\n".join(log.read_text() for log in sorted(out.glob("valgrind.*.log")))
        if result.returncode != 0:
            raise RuntimeError(f"{contender}: {result.stderr}\n{logs}")
        children: dict[str, list[int]] = json.loads((out / "children.json").read_text())
        results = []
        for workload, pids in children.items():
            base, more = (totals((out / f"callgrind.{pid}.out").read_text()) for pid in pids)
            each = per_request(base, more)
            results.append(Count(contender, workload, database, base, more, each))
        if keep := os.environ.get("BENCH_CALLGRIND_DIR"):
            _keep(Path(keep), out, contender, children)
    return results


def _keep(keep: Path, out: Path, contender: str, children: dict[str, list[int]]) -> None:
    """Both runs' callgrind files, and Python's perf maps when it wrote them (bench.profile)."""
    keep.mkdir(parents=True, exist_ok=True)
    for workload, pids in children.items():
        for requests, pid in zip((BASE, BASE + EXTRA), pids, strict=True):
            name = f"callgrind.{contender}.{workload}.{requests}.out"
            shutil.copyfile(out / f"callgrind.{pid}.out", keep / name)
    pids = [int(log.name.split(".")[1]) for log in out.glob("valgrind.*.log")]
    for pid in pids:
        perf_map = Path(f"/tmp/perf-{pid}.map")  # noqa: S108 - where CPython writes it
        if perf_map.exists():
            shutil.move(perf_map, keep / f"perf.{contender}.{pid}.map")


def totals(callgrind_out: str) -> int:
    """The instruction count (the first event, Ir) of a callgrind output file."""
    found = re.search(r"^totals:\s+(\d+)", callgrind_out, re.MULTILINE) or re.search(
        r"^summary:\s+(\d+)", callgrind_out, re.MULTILINE
    )
    if not found:
        raise ValueError("no totals: or summary: line in this callgrind output")
    return int(found.group(1))


def per_request(base_total: int, more_total: int, extra: int = EXTRA) -> float:
    """Instructions of one request, from runs that differ by `extra` requests."""
    if more_total <= base_total:
        raise ValueError(f"the longer run counted {more_total:,}, not more than {base_total:,}")
    return (more_total - base_total) / extra


# --- under valgrind: build the app, fork a child per run ----------------------------------


def _forks(contender: str, workloads: list[str], manifest: Path) -> int:
    """Build the app once; per workload, two children (BASE, BASE + EXTRA requests)."""
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - access lines are written, unread
    app = APPS[contender]
    module, attribute = app.target.split(":")
    target = getattr(__import__(module, fromlist=[attribute]), attribute)
    children: dict[str, list[int]] = {}
    for workload in workloads:
        for run, requests in enumerate((BASE, BASE + EXTRA)):
            # Each run its own users, so every PUT's If-Match names the current version.
            skip = run * (WARMUP + BASE)
            pid = os.fork()
            if pid == 0:  # the child: no threads or event loop came from the parent
                _own_connections()
                sys.stdout.flush()
                os._exit(_send(contender, app, target, workload, requests, skip))
            _, status = os.waitpid(pid, 0)
            if status != 0:
                print(f"{contender} {workload}: child exited with {status}", file=sys.stderr)
                return 1
            children.setdefault(workload, []).append(pid)
    manifest.write_text(json.dumps(children))
    return 0


def _own_connections() -> None:
    """SQLAlchemy's advice for a forked child: leave the parent's pooled connections to
    it and open new ones (PostgreSQL's prepared statements belong to one connection)."""
    from sqlalchemy.engine import Engine

    for engine in [thing for thing in gc.get_objects() if isinstance(thing, Engine)]:
        engine.dispose(close=False)


def _send(contender: str, app: App, target: Any, workload: str, requests: int, skip: int) -> int:
    call = _wsgi_caller(target) if app.interface == "wsgi" else _asgi_caller(target)
    wanted = _requests(workload, skip)
    for _ in range(WARMUP + requests):
        method, path, query, headers, body, expected = next(wanted)
        status = call(method, path, query, headers, body)
        if status != expected:
            print(f"{contender} answered {status} to {method} {path}", file=sys.stderr)
            return 1
    return 0


Request = tuple[str, str, str, list[tuple[str, str]], bytes, int]


def _requests(workload: str, skip: int = 0) -> Iterator[Request]:
    """The workload's requests: ids walk the seeded users from the `skip`th on."""
    first, last = int(os.environ["BENCH_FIRST_ID"]) + skip, int(os.environ["BENCH_LAST_ID"])
    headers = [("X-API-Key", os.environ["BENCH_API_KEY"]), ("Accept", "application/json")]
    json_headers = [*headers, ("Content-Type", "application/json")]
    for n in range(last - first + 1):  # each seeded user once: every If-Match is current
        if workload == "get":
            yield "GET", f"/v1/users/{first + n}", "", headers, b"", 200
        elif workload == "list":
            yield "GET", "/v1/users", "limit=20", headers, b"", 200
        elif workload == "put":
            body = json.dumps({"name": f"renamed {n}", "age": n % 120}).encode()
            put_headers = [*json_headers, ("If-Match", '"1"')]
            yield "PUT", f"/v1/users/{first + n}", "", put_headers, body, 200
        elif workload == "post":
            body = json.dumps({"name": f"bench user {n}", "age": n % 120}).encode()
            yield "POST", "/v1/users", "", json_headers, body, 201
        else:
            raise ValueError(f"unknown workload {workload!r}")


Caller = Callable[[str, str, str, list[tuple[str, str]], bytes], int]


def wsgi_environ(
    method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes
) -> dict[str, Any]:
    """What gunicorn hands a WSGI app for one request from a local client."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8080",
        "HTTP_USER_AGENT": "bench",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in headers:
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    return environ


def _wsgi_caller(app: Callable[..., Any]) -> Caller:
    def call(
        method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes
    ) -> int:
        environ = wsgi_environ(method, path, query, headers, body)
        status: list[str] = []

        def start_response(line: str, _headers: Any, _exc_info: Any = None) -> None:
            status.append(line)

        result = app(environ, start_response)
        try:
            b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return int(status[0].split()[0])

    return call


def _asgi_caller(app: Callable[..., Any]) -> Caller:
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_lifespan_startup(app))

    async def one(
        method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes
    ) -> int:
        raw = [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"bench")]
        raw += [(name.lower().encode(), value.encode()) for name, value in headers]
        if body:
            raw.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": raw,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8080),
            "state": {},
        }
        answered = asyncio.Event()
        status = [0]
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop()
            await answered.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif not message.get("more_body"):
                answered.set()

        await app(scope, receive, send)
        answered.set()
        return status[0]

    def call(
        method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes
    ) -> int:
        return loop.run_until_complete(one(method, path, query, headers, body))

    return call


async def _lifespan_startup(app: Callable[..., Any]) -> None:
    """What uvicorn sends before the first request; the task then waits for shutdown."""
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    messages.put_nowait({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup."):
            started.set()

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.ensure_future(app(scope, messages.get, send))
    waiting = asyncio.ensure_future(started.wait())
    await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    _lifespans.append(task)  # kept referenced, never awaited: the process ends with it


_lifespans: list[Any] = []


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
