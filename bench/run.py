"""`make bench`: users-api against its peers, on SQLite and PostgreSQL.

Each contender runs alone with one worker pinned to CPU 0 while wrk, pinned to CPU 1,
loads it: a warm-up, then BENCH_REPEATS runs of BENCH_DURATION seconds; the table shows
the median run. Every contender gets a fresh copy of the same seeded database.

    python -m bench.run                   # everything (about 6.5 minutes)
    BENCH_ONLY=users-api,plain-flask BENCH_DATABASES=sqlite BENCH_WORKLOADS=get python -m bench.run

A full run writes bench/results/latest.{json,md,png}; a narrowed one (BENCH_ONLY,
BENCH_DATABASES or BENCH_WORKLOADS) writes partial.* instead.
"""

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

import logging_ext.setup  # noqa: F401 - first: it quiets connexion's import-time warning
import storage
from handlers.auth import new_key
from storage.tables import users

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PORT = int(os.environ.get("BENCH_PORT", "8099"))
DURATION = int(os.environ.get("BENCH_DURATION", "3"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "2"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
SEED_USERS = 10_000
# More than any contender updates in one run, so each user is updated at most once or
# twice and its If-Match is always its current version (bench/wrk/workload.lua).
PUT_USERS = 10_000
SERVER_CPU, LOAD_CPU = "0", "1"
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

DATABASES = {"sqlite": "a SQLite file", "postgres": "the server at BENCH_POSTGRES_URL"}
WORKLOADS = {
    "get": "GET /v1/users/{id}",
    "list": "GET /v1/users?limit=20",
    "put": "PUT /v1/users/{id} If-Match",
    # Last: it grows the table, which the others would then read.
    "post": "POST /v1/users",
}

BASELINE_CONF = "bench/baseline.gunicorn.conf.py"
CONTENDERS: dict[str, list[str]] = {
    # As deployed: gunicorn.conf.py, with WEB_CONCURRENCY=1 for one worker.
    "users-api": ["gunicorn", "-c", "gunicorn.conf.py"],
    "plain-flask": ["gunicorn", "-c", BASELINE_CONF, "bench.contenders.plain_flask:app"],
    "fastapi": [
        "uvicorn",
        "bench.contenders.fastapi_app:app",
        "--no-access-log",
        "--log-level=warning",
    ],
    "raw-wsgi": ["gunicorn", "-c", BASELINE_CONF, "bench.contenders.raw_wsgi:app"],
}


@dataclass
class Cell:
    database: str
    workload: str
    contender: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx: int
    peak_rss_mb: float
    runs_rps: list[float]


def main() -> int:
    if not {0, 1} <= os.sched_getaffinity(0):
        print("bench: needs CPUs 0 and 1 (server on one, wrk on the other)", file=sys.stderr)
        return 2
    if not shutil.which("wrk"):
        print("bench: wrk is missing (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    only = _choice("BENCH_ONLY", CONTENDERS)
    workloads = _choice("BENCH_WORKLOADS", WORKLOADS)
    databases = _choice("BENCH_DATABASES", DATABASES)
    key, api_keys = new_key("bench", "write")
    cells: list[Cell] = []
    skipped: list[str] = []
    started = time.monotonic()
    for database in databases:
        with _seeded(database) as fresh_copy:
            if fresh_copy is None:
                skipped.append(f"postgres: no server at {POSTGRES_URL}")
                continue
            for contender in only:
                url, first_id, last_id = fresh_copy(contender)
                env = {
                    "DATABASE_URL": url,
                    "API_KEYS": api_keys,
                    "BENCH_API_KEY": key,
                    "BENCH_FIRST_ID": str(first_id),
                    "BENCH_LAST_ID": str(last_id),
                }
                with _serving(contender, env) as pids:
                    for workload in workloads:
                        cell = _measure(database, workload, contender, url, env, pids)
                        cells.append(cell)
                        print(_row(cell), flush=True)
    elapsed = time.monotonic() - started
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "settings": {
            "duration_s": DURATION,
            "warmup_s": WARMUP,
            "repeats": REPEATS,
            "connections": CONNECTIONS,
            "seed_users": SEED_USERS,
            "elapsed_s": round(elapsed),
        },
        "skipped": skipped,
        "cells": [asdict(cell) for cell in cells],
    }
    # A narrowed run (BENCH_ONLY and friends) must not replace the full table.
    chosen = ((only, CONTENDERS), (workloads, WORKLOADS), (databases, DATABASES))
    name = "partial" if any(set(c) != set(known) for c, known in chosen) else "latest"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown_table(report)
    (RESULTS / f"{name}.md").write_text(table, encoding="utf-8")
    chart(report, RESULTS / f"{name}.png")
    print("\n" + table)
    for reason in skipped:
        print(f"skipped {reason}")
    print(f"results: {RESULTS.relative_to(ROOT)}/{name}.{{json,md,png}} ({elapsed:.0f} s)")
    return 0


def _choice(variable: str, known: dict[str, Any]) -> list[str]:
    wanted = [w for w in os.environ.get(variable, "").split(",") if w] or list(known)
    unknown = set(wanted) - set(known)
    if unknown:
        raise SystemExit(f"{variable}: unknown {sorted(unknown)}; known: {list(known)}")
    return wanted


# --- databases -----------------------------------------------------------------------


@contextmanager
def _seeded(database: str) -> Iterator[Any]:
    """Seed one template database; yield a function that makes a fresh copy of it."""
    if database == "sqlite":
        with tempfile.TemporaryDirectory(prefix="users-bench-") as directory:
            template = Path(directory) / "template.db"
            ids = _seed(f"sqlite:///{template}")

            def sqlite_copy(contender: str) -> tuple[str, int, int]:
                copy = Path(directory) / f"{contender}.db"
                shutil.copyfile(template, copy)
                return f"sqlite:///{copy}", *ids

            yield sqlite_copy
        return
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:  # any failure to connect means: no PostgreSQL here
        yield None
        return
    names = ["users_bench_template", *(f"users_bench_{c.replace('-', '_')}" for c in CONTENDERS)]
    _drop(admin, names)
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE users_bench_template"))
    base = make_url(POSTGRES_URL)
    ids = _seed(base.set(database="users_bench_template").render_as_string(hide_password=False))

    def postgres_copy(contender: str) -> tuple[str, int, int]:
        name = f"users_bench_{contender.replace('-', '_')}"
        _drop(admin, [name])
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name} TEMPLATE users_bench_template"))
        return base.set(database=name).render_as_string(hide_password=False), *ids

    try:
        yield postgres_copy
    finally:
        _drop(admin, names)
        admin.dispose()


def _drop(admin: Any, names: list[str]) -> None:
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def _seed(url: str) -> tuple[int, int]:
    engine = storage.make_engine(url)
    storage.upgrade(engine)
    engine.dispose()
    return _add_users(url, SEED_USERS)


def _add_users(url: str, count: int) -> tuple[int, int]:
    """Insert `count` users at version 1; return the first and last new id."""
    engine = storage.make_engine(url)
    now = datetime.now(UTC)
    rows = [
        {"name": f"user {n}", "age": n % 120, "version": 1, "created_at": now, "updated_at": now}
        for n in range(count)
    ]
    with engine.begin() as conn:
        before = conn.execute(select(func.max(users.c.id))).scalar_one() or 0
        conn.execute(insert(users), rows)
        last = conn.execute(select(func.max(users.c.id))).scalar_one()
    engine.dispose()
    return before + 1, int(last)


# --- servers and load ----------------------------------------------------------------


@contextmanager
def _serving(contender: str, env: dict[str, str]) -> Iterator[list[int]]:
    """Start the contender pinned to SERVER_CPU; yield its worker pids once it answers."""
    command = CONTENDERS[contender]
    if contender == "fastapi":
        command = [*command, f"--port={PORT}"]
    elif contender != "users-api":
        command = [*command, f"--bind=127.0.0.1:{PORT}"]
    full_env = {
        **os.environ,
        **env,
        "HOST": "127.0.0.1",
        "PORT": str(PORT),
        "WEB_CONCURRENCY": "1",
        "LOG_FORMAT": "json",
        # gunicorn.conf.py recycles a worker every ~10,000 requests, which a run reaches;
        # the restart would land inside a measurement and end its peak-RSS reading.
        "GUNICORN_CMD_ARGS": "--max-requests=0",
    }
    bin_dir = Path(sys.executable).parent
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{contender}-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, str(bin_dir / command[0]), *command[1:]],
        cwd=ROOT,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_answering(process, env, Path(log.name))
        yield _workers(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        os.unlink(log.name)


def _wait_until_answering(process: subprocess.Popen[bytes], env: dict[str, str], log: Path) -> None:
    probe = urllib.request.Request(
        f"http://127.0.0.1:{PORT}/v1/users/{env['BENCH_FIRST_ID']}",
        headers={"X-API-Key": env["BENCH_API_KEY"]},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(probe, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"server did not answer within 60 s:\n{log.read_text()}")


def _workers(pid: int) -> list[int]:
    """gunicorn's workers are its children; uvicorn with one worker is one process."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children] or [pid]


def _measure(
    database: str, workload: str, contender: str, url: str, env: dict[str, str], pids: list[int]
) -> Cell:
    _wrk(workload, _targets(workload, url, env), WARMUP)
    for pid in pids:  # peak RSS from here on (Linux: "5" resets VmHWM)
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    runs = [_wrk(workload, _targets(workload, url, env), DURATION) for _ in range(REPEATS)]
    median = sorted(runs, key=lambda run: run["rps"])[len(runs) // 2]
    return Cell(
        database=database,
        workload=workload,
        contender=contender,
        rps=round(median["rps"], 1),
        p50_ms=round(statistics.median(run["p50_us"] for run in runs) / 1000, 2),
        p99_ms=round(statistics.median(run["p99_us"] for run in runs) / 1000, 2),
        errors=int(sum(run["errors"] for run in runs)),
        non_2xx=int(sum(run["non_2xx"] for run in runs)),
        peak_rss_mb=round(max(_peak_rss_kb(pid) for pid in pids) / 1024, 1),
        runs_rps=[round(run["rps"], 1) for run in runs],
    )


def _targets(workload: str, url: str, env: dict[str, str]) -> dict[str, str]:
    """The ids a run works on. Each PUT run gets users made for it, all at version 1, so
    requests still in flight from an earlier run cannot change what this one expects."""
    if workload != "put":
        return env
    first, last = _add_users(url, PUT_USERS)
    return {**env, "BENCH_FIRST_ID": str(first), "BENCH_LAST_ID": str(last)}


def _wrk(workload: str, env: dict[str, str], seconds: int) -> dict[str, float]:
    result = subprocess.run(
        [
            "taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s",
            "-s", str(ROOT / "bench" / "wrk" / "workload.lua"), f"http://127.0.0.1:{PORT}",
        ],
        env={**os.environ, **env, "BENCH_WORKLOAD": workload},
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    summary: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    summary["rps"] = summary["requests"] / (summary["duration_us"] / 1e6)
    return summary


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1],
    }


# --- reporting ------------------------------------------------------------------------


def _row(cell: Cell) -> str:
    return (
        f"{cell.database:8} {cell.workload:5} {cell.contender:12} {cell.rps:9.0f} req/s"
        f"  p50 {cell.p50_ms:6.2f} ms  p99 {cell.p99_ms:7.2f} ms  errors {cell.errors}"
        f"  rss {cell.peak_rss_mb:6.1f} MB"
    )


def markdown_table(report: dict[str, Any]) -> str:
    cells = report["cells"]
    by_key = {(c["database"], c["workload"], c["contender"]): c for c in cells}
    lines = [
        f"{report['date'][:10]} on {report['machine']['cpu']} ({report['machine']['cpus']} CPUs),"
        f" one worker on one core, wrk -t1 -c{report['settings']['connections']} on the other;"
        f" median of {report['settings']['repeats']} x {report['settings']['duration_s']} s.",
        "",
        "| database | workload | contender | req/s | p50 ms | p99 ms | errors | peak RSS MB"
        " | vs plain-flask | vs fastapi |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c in cells:
        ratios = []
        for peer in ("plain-flask", "fastapi"):
            base = by_key.get((c["database"], c["workload"], peer))
            ratios.append(f"{c['rps'] / base['rps']:.2f}x" if base and base["rps"] else "-")
        lines.append(
            f"| {c['database']} | {WORKLOADS[c['workload']]} | {c['contender']} | {c['rps']:.0f}"
            f" | {c['p50_ms']:.2f} | {c['p99_ms']:.2f} | {c['errors']} | {c['peak_rss_mb']:.0f}"
            f" | {ratios[0]} | {ratios[1]} |"
        )
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = report["cells"]
    databases = sorted({c["database"] for c in cells}, reverse=True)
    contenders = [c for c in CONTENDERS if any(cell["contender"] == c for cell in cells)]
    workloads = [w for w in WORKLOADS if any(cell["workload"] == w for cell in cells)]
    if not cells:
        return
    figure, axes = plt.subplots(1, len(databases), figsize=(6 * len(databases), 4), squeeze=False)
    width = 0.8 / len(contenders)
    for axis, database in zip(axes[0], databases, strict=True):
        for n, contender in enumerate(contenders):
            values = [
                next(
                    (
                        c["rps"]
                        for c in cells
                        if (c["database"], c["workload"], c["contender"])
                        == (database, w, contender)
                    ),
                    0,
                )
                for w in workloads
            ]
            axis.bar([i + n * width for i in range(len(workloads))], values, width, label=contender)
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(workloads))], workloads)
        axis.set_title(f"{database}: requests per second, one worker")
        axis.set_ylabel("req/s")
    axes[0][0].legend()
    figure.suptitle(f"users-api benchmark, {report['date'][:10]}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
