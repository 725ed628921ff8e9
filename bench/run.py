"""`make bench`: users-api against its peers, on SQLite and PostgreSQL.

Each contender runs alone with one worker pinned to CPU 0 while wrk, pinned to CPU 1,
loads it: a warm-up, then BENCH_REPEATS runs of BENCH_DURATION seconds; the table shows
the median run. Every contender gets a fresh copy of the same seeded database. Then
bench.instructions counts each contender's instructions per request on SQLite, which
noise cannot move (BENCH_INSTRUCTIONS=0 skips that).

    python -m bench.run                   # everything (20 minutes on 2 idle cores)
    BENCH_ONLY=users-api,connexion2 BENCH_DATABASES=sqlite BENCH_WORKLOADS=get python -m bench.run

A full run writes bench/results/latest.{json,md,png}; a narrowed one (BENCH_ONLY,
BENCH_DATABASES or BENCH_WORKLOADS) writes partial.* instead. bench/README.md explains
the method and the contenders.
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

import logging_ext.setup  # noqa: F401 - first: it quiets connexion's import-time warning
from apikeys import new_key
from bench import instructions
from bench.databases import DATABASES, POSTGRES_URL, SEED_USERS, add_users, seeded

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PORT = int(os.environ.get("BENCH_PORT", "8099"))
DURATION = int(os.environ.get("BENCH_DURATION", "3"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "2"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
COUNT_INSTRUCTIONS = os.environ.get("BENCH_INSTRUCTIONS", "1") != "0"
# More than any contender updates in one run, so each user is updated at most once or
# twice and its If-Match is always its current version (bench/wrk/workload.lua).
PUT_USERS = 10_000
SERVER_CPU, LOAD_CPU = "0", "1"
WORKLOADS = {
    "get": "GET /v1/users/{id}",
    "list": "GET /v1/users?limit=20",
    "put": "PUT /v1/users/{id} If-Match",
    # Last: it grows the table, which the others would then read.
    "post": "POST /v1/users",
}

BASELINE_CONF = "bench/baseline.gunicorn.conf.py"
CONNEXION2_BIN = "bench/.venv-connexion2/bin/"
UVICORN = ["--no-access-log", "--log-level=warning"]
# Each is one worker process; bench.instructions.APPS names the same apps.
CONTENDERS: dict[str, list[str]] = {
    # As deployed: gunicorn.conf.py, with WEB_CONCURRENCY=1 for one worker.
    "users-api": ["gunicorn", "-c", "gunicorn.conf.py"],
    # The same with rate limits on, in Redis (never reached): what limiting costs.
    "users-api-limits": ["gunicorn", "-c", "gunicorn.conf.py"],
    # The peers, each with users-api's contract or features (bench/README.md).
    "connexion2": [
        CONNEXION2_BIN + "gunicorn",
        "-c",
        BASELINE_CONF,
        "bench.contenders.connexion2_app:app",
    ],
    "connexion3": ["uvicorn", "bench.contenders.connexion3_app:app", *UVICORN],
    "fastapi-full": ["uvicorn", "bench.contenders.fastapi_full:app", *UVICORN],
    # References without those features.
    "fastapi": ["uvicorn", "bench.contenders.fastapi_app:app", *UVICORN],
    "plain-flask": ["gunicorn", "-c", BASELINE_CONF, "bench.contenders.plain_flask:app"],
    "raw-wsgi": ["gunicorn", "-c", BASELINE_CONF, "bench.contenders.raw_wsgi:app"],
}
PEERS = ["connexion2", "connexion3", "fastapi-full", "fastapi", "plain-flask", "raw-wsgi"]


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
    instructions: float | None = None  # per request, SQLite only (bench.instructions)


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
        with seeded(database) as fresh_copy:
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
                    **dict(instructions.APPS[contender].env),
                }
                with _serving(contender, env) as pids:
                    for workload in workloads:
                        cell = _measure(database, workload, contender, url, env, pids)
                        cells.append(cell)
                        print(_row(cell), flush=True)
            if database == "sqlite" and COUNT_INSTRUCTIONS:
                jobs = instructions.JOBS
                print(f"instructions per request (valgrind, {jobs} at a time) ...", flush=True)
                counts = instructions.measure(only, workloads, database, fresh_copy)
                for count in counts:
                    print(instructions.line(count), flush=True)
                _add_instructions(cells, counts)
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
            "instructions": COUNT_INSTRUCTIONS,
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


def _add_instructions(cells: list[Cell], counts: list[instructions.Count]) -> None:
    per_request = {(c.database, c.workload, c.contender): c.per_request for c in counts}
    for cell in cells:
        found = per_request.get((cell.database, cell.workload, cell.contender))
        cell.instructions = round(found) if found is not None else None


# --- servers and load ----------------------------------------------------------------


@contextmanager
def _serving(contender: str, env: dict[str, str]) -> Iterator[list[int]]:
    """Start the contender pinned to SERVER_CPU; yield its worker pids once it answers."""
    command = CONTENDERS[contender]
    if command[0] == "uvicorn":
        command = [*command, f"--port={PORT}"]
    elif not contender.startswith("users-api"):
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
    program = ROOT / command[0] if "/" in command[0] else bin_dir / command[0]
    process = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, str(program), *command[1:]],
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
    first, last = add_users(url, PUT_USERS)
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


def _millions(instructions: float | None) -> str:
    return f"{instructions / 1e6:.2f}" if instructions else "-"


def markdown_table(report: dict[str, Any]) -> str:
    """Every cell, then users-api against each peer: req/s and instructions ratios."""
    cells = report["cells"]
    settings = report["settings"]
    lines = [
        f"{report['date'][:10]} on {report['machine']['cpu']} ({report['machine']['cpus']} CPUs),"
        f" one worker on one core, wrk -t1 -c{settings['connections']} on the other;"
        f" median of {settings['repeats']} x {settings['duration_s']} s. Instructions: millions"
        " per request, the app called in process under callgrind (SQLite only).",
        "",
        "| database | workload | contender | req/s | p50 ms | p99 ms | errors | peak RSS MB"
        " | M instructions |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for c in cells:
        lines.append(
            f"| {c['database']} | {WORKLOADS[c['workload']]} | {c['contender']} | {c['rps']:.0f}"
            f" | {c['p50_ms']:.2f} | {c['p99_ms']:.2f} | {c['errors']} | {c['peak_rss_mb']:.0f}"
            f" | {_millions(c.get('instructions'))} |"
        )
    peers = [p for p in PEERS if any(c["contender"] == p for c in cells)]
    if any(c["contender"] == "users-api" for c in cells) and peers:
        lines += ["", *ratio_table(cells, peers)]
    return "\n".join(lines) + "\n"


def ratio_table(cells: list[dict[str, Any]], peers: list[str]) -> list[str]:
    """users-api's req/s over the peer's, and the peer's instructions over users-api's:
    above 1.00x users-api is the faster, below it the slower, on both measures."""
    by_key = {(c["database"], c["workload"], c["contender"]): c for c in cells}
    lines = [
        "users-api against each contender: req/s ratio (users-api / contender), and in"
        " brackets the instructions ratio (contender / users-api); above 1.00x users-api"
        " does better.",
        "",
        "| database | workload | " + " | ".join(f"vs {p}" for p in peers) + " |",
        "|---|---|" + "--:|" * len(peers),
    ]
    for c in cells:
        if c["contender"] != "users-api":
            continue
        ratios = []
        for peer in peers:
            other = by_key.get((c["database"], c["workload"], peer))
            if not other or not other["rps"]:
                ratios.append("-")
                continue
            text = f"{c['rps'] / other['rps']:.2f}x"
            if c.get("instructions") and other.get("instructions"):
                text += f" ({other['instructions'] / c['instructions']:.2f}x)"
            ratios.append(text)
        lines.append(f"| {c['database']} | {WORKLOADS[c['workload']]} | {' | '.join(ratios)} |")
    return lines


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
