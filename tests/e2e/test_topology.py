"""Three replicas behind HAProxy and PgBouncer, stopped and killed one at a time under load.

All started here on free ports with generated configs: PostgreSQL (a fresh database on
the system server), PgBouncer in transaction mode, three gunicorns (gevent workers) and
HAProxy health-checking /readyz. For DURATION seconds clients read, create, and race
If-Match increments on one user while each replica in turn gets SIGTERM and comes back,
and one gets SIGKILL. `make topology` prints the report (pytest -s).
"""

import csv
import io
import itertools
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import (
    PROBLEM,
    ROOT,
    WRITE_KEY,
    LiveServer,
    free_port,
    launch_gunicorn,
    start_pgbouncer,
)

pytestmark = [pytest.mark.topology, pytest.mark.postgres]

DURATION = 30.0
REPLICAS = 3
READERS, WRITERS, RACERS = 4, 2, 3

if not (shutil.which("haproxy") and shutil.which("pgbouncer")):
    pytest.skip(
        "needs Debian's haproxy and pgbouncer (.ci/run installs them)", allow_module_level=True
    )


def haproxy_config(port: int, stats_port: int, replica_ports: list[int]) -> str:
    """deploy/haproxy/haproxy.cfg, the one compose.yaml ships, on this host: the same
    timeouts, retries, health checks and replay rules; loopback ports instead of Docker's
    DNS, and a stats page to see which replicas are up."""
    shipped = (ROOT / "deploy" / "haproxy" / "haproxy.cfg").read_text()
    servers = "\n".join(f"    server r{n} 127.0.0.1:{p} check" for n, p in enumerate(replica_ports))
    edits = [
        (r"\nresolvers docker\n(?:[ \t]+.*\n)+", "\n"),
        (r"(?m)^(\s*)bind :8080$", rf"\g<1>bind 127.0.0.1:{port}"),
        (r"(?m) resolvers docker init-addr none$", ""),
        (r"(?m)^\s*server-template .*$", servers.replace("\\", "\\\\")),
    ]
    config = shipped
    for pattern, replacement in edits:
        config, found = re.subn(pattern, replacement, config)
        assert found == 1, f"deploy/haproxy/haproxy.cfg no longer has {pattern!r}"
    stats = (
        f"frontend stats\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /stats\n"
    )
    return f"{config}\n{stats}"


@dataclass
class HAProxy:
    process: subprocess.Popen[bytes]
    base_url: str
    stats_url: str
    log_path: Path

    def servers_up(self) -> dict[str, bool]:
        text = httpx.get(f"{self.stats_url};csv", timeout=2).text.lstrip("# ")
        return {
            row["svname"]: row["status"] == "UP"
            for row in csv.DictReader(io.StringIO(text))
            if row["pxname"] == "replicas" and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def wait_all_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(self.servers_up().values()):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"HAProxy never saw every replica up: {self.servers_up()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_haproxy(tmp_path: Path, replica_ports: list[int]) -> HAProxy:
    port, stats_port = free_port(), free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(port, stats_port, replica_ports))
    subprocess.run(["haproxy", "-c", "-q", "-f", str(config)], check=True)
    log_path = tmp_path / "haproxy.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return HAProxy(
        process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{stats_port}/stats", log_path
    )


@dataclass
class Tally:
    """What the clients saw: one entry per request."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.monotonic)
    failure_times: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    unanswered_writes: list[float] = field(default_factory=list)  # when each was sent
    created: dict[int, str] = field(default_factory=dict)
    increments: int = 0
    unanswered_increments: int = 0

    def record(self, method: str, started: float, outcome: httpx.Response | Exception) -> None:
        with self.lock:
            self.latencies.append(time.monotonic() - started)
            if isinstance(outcome, Exception):
                self.statuses[type(outcome).__name__] += 1
                self.failures[f"{method} {type(outcome).__name__}"] += 1
                self.failure_times.append(
                    f"{started - self.started:.1f}s {method} {type(outcome).__name__}"
                )
                if method != "GET":
                    self.unanswered_writes.append(started - self.started)
                return
            status = outcome.status_code
            self.statuses[str(status)] += 1
            if method != "GET" and status == 502 and outcome.headers.get("content-type") != PROBLEM:
                # HAProxy's own 502: the replica closed the connection without an
                # answer (killed mid-request) and a write is not replayed. Not acknowledged.
                self.unanswered_writes.append(started - self.started)
                self.failures[f"{method} 502 from HAProxy (no answer, not replayed)"] += 1
                self.failure_times.append(f"{started - self.started:.1f}s {method} 502")
            elif status >= 500 or (method == "GET" and status != 200):
                self.failures[f"{method} {status}"] += 1
                self.failure_times.append(f"{started - self.started:.1f}s {method} {status}")


def call(
    http: httpx.Client, tally: Tally, method: str, url: str, **kwargs: Any
) -> httpx.Response | None:
    started = time.monotonic()
    try:
        response = http.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        tally.record(method, started, exc)
        return None
    tally.record(method, started, response)
    return response


def reader(base_url: str, tally: Tally, known: list[int], stop: threading.Event) -> None:
    with httpx.Client(base_url=base_url, headers={"X-API-Key": WRITE_KEY}, timeout=15) as http:
        while not stop.is_set():
            if random.random() < 0.2:
                call(http, tally, "GET", "/v1/users", params={"limit": 10})
            else:
                call(http, tally, "GET", f"/v1/users/{random.choice(known)}")


def writer(base_url: str, tally: Tally, known: list[int], stop: threading.Event, n: int) -> None:
    with httpx.Client(base_url=base_url, headers={"X-API-Key": WRITE_KEY}, timeout=15) as http:
        for i in itertools.count():
            if stop.is_set():
                return
            name = f"writer {n} #{i}"
            response = call(http, tally, "POST", "/v1/users", json={"name": name, "age": i % 140})
            if response is not None and response.status_code == 201:
                user_id = response.json()["id"]
                with tally.lock:
                    tally.created[user_id] = name
                known.append(user_id)


def racer(base_url: str, tally: Tally, url: str, stop: threading.Event) -> None:
    """Read the counter, write counter + 1 with If-Match; on 412, read again."""
    with httpx.Client(base_url=base_url, headers={"X-API-Key": WRITE_KEY}, timeout=15) as http:
        while not stop.is_set():
            current = call(http, tally, "GET", url)
            if current is None or current.status_code != 200:
                continue
            response = call(
                http,
                tally,
                "PUT",
                url,
                json={"name": str(int(current.json()["name"]) + 1), "age": 0},
                headers={"If-Match": current.headers["etag"]},
            )
            with tally.lock:
                if response is None or response.status_code == 502:
                    tally.unanswered_increments += 1
                elif response.status_code == 200:
                    tally.increments += 1


def restart(replica: LiveServer, tmp_path: Path, database_url: str, how: str) -> LiveServer:
    """SIGTERM (graceful) or SIGKILL (the whole replica) and start it again on its port."""
    if how == "SIGKILL":
        replica.kill()
    else:
        assert replica.stop(signal.SIGTERM) == 0, replica.log()[-3000:]
    port = int(replica.base_url.rsplit(":", 1)[1])
    return launch_gunicorn(tmp_path, database_url, workers=1, port=port, **_replica_env(replica))


def _replica_env(replica: LiveServer) -> dict[str, str]:
    keys = ("DB_POOLER", "VALIDATE_RESPONSES", "DB_POOL_SIZE", "DB_MAX_OVERFLOW", "DRAIN_SECONDS")
    return {key: replica.env[key] for key in keys}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def test_replicas_stopped_and_killed_under_load_lose_nothing(tmp_path, postgres_url):
    bouncer = start_pgbouncer(tmp_path, postgres_url, pool_mode="transaction", pool_size=20)
    ports = [free_port() for _ in range(REPLICAS)]
    env = {
        "DB_POOLER": "transaction",
        "VALIDATE_RESPONSES": "false",
        "DB_POOL_SIZE": "5",
        "DB_MAX_OVERFLOW": "5",
        # /readyz says 503 this long after SIGTERM before gunicorn stops accepting:
        # HAProxy (inter 500ms, fall 1) takes the replica out of rotation first.
        "DRAIN_SECONDS": "2",
    }
    # Started together: they also race to migrate the fresh database.
    replicas = [launch_gunicorn(tmp_path, bouncer.url, workers=1, port=p, **env) for p in ports]
    haproxy = start_haproxy(tmp_path, ports)
    events: list[str] = []
    kills: list[tuple[float, float]] = []  # (signalled, back) of each SIGKILL, from start
    try:
        for replica in replicas:
            replica.wait_healthy(path="/readyz")
        haproxy.wait_all_up()
        tally = Tally()
        with httpx.Client(base_url=haproxy.base_url, headers={"X-API-Key": WRITE_KEY}) as http:
            known = [
                http.post("/v1/users", json={"name": f"seed {i}", "age": i}).json()["id"]
                for i in range(20)
            ]
            counter_url = "/v1/users/{}".format(
                http.post("/v1/users", json={"name": "0", "age": 0}).json()["id"]
            )
        stop = threading.Event()
        threads = (
            [
                threading.Thread(target=reader, args=(haproxy.base_url, tally, known, stop))
                for _ in range(READERS)
            ]
            + [
                threading.Thread(target=writer, args=(haproxy.base_url, tally, known, stop, n))
                for n in range(WRITERS)
            ]
            + [
                threading.Thread(target=racer, args=(haproxy.base_url, tally, counter_url, stop))
                for _ in range(RACERS)
            ]
        )
        started = tally.started = time.monotonic()
        for thread in threads:
            thread.start()
        # Each replica in turn: SIGTERM and back; the third time round, SIGKILL.
        schedule = itertools.cycle(range(REPLICAS))
        step = 0
        while time.monotonic() - started < DURATION or step < REPLICAS + 1:
            n = next(schedule)
            how = "SIGKILL" if step == REPLICAS else "SIGTERM"
            signalled = time.monotonic()
            replicas[n] = restart(replicas[n], tmp_path, bouncer.url, how)
            stopped = time.monotonic()
            replicas[n].wait_healthy(path="/readyz")
            ready = time.monotonic()
            haproxy.wait_all_up()
            if how == "SIGKILL":
                kills.append((signalled - started, stopped - started))
            events.append(
                f"{signalled - started:5.1f}s r{n} {how}: exited in {stopped - signalled:.1f} s, "
                f"ready {ready - stopped:.1f} s later, in HAProxy after "
                f"{time.monotonic() - ready:.1f} s"
            )
            step += 1
        stop.set()
        for thread in threads:
            thread.join(30)
        elapsed = time.monotonic() - started

        with httpx.Client(base_url=haproxy.base_url, headers={"X-API-Key": WRITE_KEY}) as http:
            missing = [
                user_id
                for user_id, name in tally.created.items()
                if (got := http.get(f"/v1/users/{user_id}")).status_code != 200
                or got.json()["name"] != name
            ]
            counter = int(http.get(counter_url).json()["name"])
    finally:
        for replica in replicas:
            replica.stop()
        haproxy.stop()
        bouncer.stop()

    requests = sum(tally.statuses.values())
    # A SIGKILLed replica may take writes in flight with it; a graceful stop must not.
    at_kill = [t for t in tally.unanswered_writes if any(a - 0.5 <= t <= b + 1 for a, b in kills)]
    at_graceful_stop = len(tally.unanswered_writes) - len(at_kill)
    report = [
        f"topology: {REPLICAS} replicas x 1 gevent worker, PgBouncer (transaction), HAProxy; "
        f"{READERS} readers, {WRITERS} writers, {RACERS} If-Match racers for {elapsed:.1f} s",
        *(f"  {event}" for event in events),
        f"requests: {requests} ({requests / elapsed:.0f}/s); statuses: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(tally.statuses.items())),
        f"latency p50 {percentile(tally.latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(tally.latencies, 0.99) * 1000:.1f} ms, "
        f"max {max(tally.latencies) * 1000:.0f} ms",
        "errors by kind: "
        + (", ".join(f"{k}: {v}" for k, v in sorted(tally.failures.items())) or "none"),
        "errors at: " + (", ".join(tally.failure_times) or "-"),
        f"creates acknowledged: {len(tally.created)}, missing afterwards: {len(missing)}; "
        f"writes unanswered (not acknowledged): {len(tally.unanswered_writes)}, "
        f"{len(at_kill)} at the SIGKILL, {at_graceful_stop} during graceful stops",
        f"If-Match increments acknowledged: {tally.increments}, unanswered: "
        f"{tally.unanswered_increments}, counter afterwards: {counter}",
    ]
    print("\n" + "\n".join(report))  # noqa: T201  the report is this test's output
    (tmp_path / "report.txt").write_text("\n".join(report) + "\n")

    failed_reads = {k: v for k, v in tally.failures.items() if k.startswith("GET")}
    server_errors = {
        k: v
        for k, v in tally.failures.items()
        if not k.startswith("GET") and "HAProxy" not in k and "Error" not in k
    }
    assert failed_reads == {}, report
    assert server_errors == {}, report
    assert missing == [], report
    assert at_graceful_stop == 0, report  # a graceful stop answers every request
    assert tally.increments <= counter <= tally.increments + tally.unanswered_increments, report
