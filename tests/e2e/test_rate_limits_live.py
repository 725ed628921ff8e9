"""Rate limits as deployed: two gunicorn services (two gevent workers each) counting in
one real Redis of the test's own, which the tests stop, restart and freeze.

`make e2e` runs these (they take about a minute).
"""

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import pytest

from apikeys import new_key
from tests.helpers import (
    API_KEYS,
    LiveServer,
    RedisServer,
    migrated,
    start_gunicorn,
    start_redis,
)

pytestmark = pytest.mark.live

READ_RATE = 20  # per second
LIMITS = f"read={READ_RATE}/second,write=5/minute"
KEYS = {
    name: new_key(name, "write" if name == "counter" else "read")
    for name in ("loader", "bystander", "counter", "survivor", "frozen")
}


def key(name: str) -> str:
    return KEYS[name][0]


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def services(
    tmp_path_factory: pytest.TempPathFactory, redis: RedisServer
) -> Iterator[list[LiveServer]]:
    """Two service processes (two gunicorns, two workers each) on one database."""
    tmp_path = tmp_path_factory.mktemp("rate-limits")
    database = migrated(f"sqlite:///{tmp_path}/users.sqlite3")
    api_keys = ",".join([API_KEYS, *(entry for _key, entry in KEYS.values())])
    servers = [
        start_gunicorn(
            tmp_path,
            database,
            workers=2,
            api_keys=api_keys,
            RATE_LIMITS=LIMITS,
            RATE_LIMIT_STORAGE=redis.url,
        )
        for _ in range(2)
    ]
    yield servers
    for server in servers:
        server.stop()


@dataclass
class Load:
    """Paced GETs of one key, spread over every service and worker, from a few threads."""

    servers: list[LiveServer]
    api_key: str
    per_second: float = 150.0
    threads: int = 6
    results: list[tuple[float, int, float]] = field(default_factory=list)  # (done, status, s)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, seconds: float) -> list[tuple[float, int, float]]:
        self.start()
        time.sleep(seconds)
        return self.finish()

    def start(self) -> None:
        self.workers = [
            threading.Thread(target=self._send, args=(n,), daemon=True) for n in range(self.threads)
        ]
        for worker in self.workers:
            worker.start()

    def finish(self) -> list[tuple[float, int, float]]:
        self.stop.set()
        for worker in self.workers:
            worker.join(30)
        return sorted(self.results)

    def _send(self, n: int) -> None:
        interval = self.threads / self.per_second
        # A new connection per request, so each service's workers all get some.
        fresh = httpx.Limits(max_keepalive_connections=0)
        clients = [server.client(self.api_key, timeout=10, limits=fresh) for server in self.servers]
        next_at = time.monotonic()
        sent = n
        while not self.stop.is_set():
            started = time.monotonic()
            status = clients[sent % len(clients)].get("/v1/users?limit=1").status_code
            done = time.monotonic()
            self.results.append((done, status, done - started))
            sent += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        for client in clients:
            client.close()


def metric(server: LiveServer, name: str) -> float:
    for line in httpx.get(f"{server.base_url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def log_events(server: LiveServer, prefix: str) -> list[dict[str, object]]:
    lines = (json.loads(line) for line in server.log().splitlines() if line.startswith("{"))
    return [line for line in lines if str(line.get("event", "")).startswith(prefix)]


def test_a_key_gets_its_rate_across_workers_and_services_and_others_are_untouched(services):
    bystander = Load(services, key("bystander"), per_second=5, threads=1)
    bystander.start()
    results = Load(services, key("loader")).run(5.5)
    calm = bystander.finish()

    statuses = Counter(status for _, status, _ in results)
    assert set(statuses) == {200, 429}, statuses
    assert statuses[429] > statuses[200]  # it asked for far more than its rate
    # The moving window repeats the first second's pattern a second later: count the
    # answers between half-seconds, where each of four whole seconds falls entirely.
    first = next(done for done, status, _ in results if status == 200)
    accepted = sum(
        1 for done, status, _ in results if status == 200 and first + 0.5 <= done < first + 4.5
    )
    assert abs(accepted - 4 * READ_RATE) <= 0.1 * 4 * READ_RATE, accepted

    assert {status for _, status, _ in calm} == {200}, Counter(s for _, s, _ in calm)
    assert len(calm) >= 20
    for server in services:  # both services answered the key, and refused it
        served = [
            line
            for line in log_events(server, "request")
            if line.get("api_key") == "loader" and line.get("status") in (200, 429)
        ]
        assert {line["status"] for line in served} == {200, 429}
        assert len({line["pid"] for line in served}) == 2  # by both workers


def test_the_fields_count_down_across_services_then_429(services):
    clients = [server.client(key("counter")) for server in services]
    remaining = []
    for n in range(5):
        response = clients[n % 2].post("/v1/users", json={"name": "Ada", "age": 36})
        assert response.status_code == 201, response.text
        assert response.headers["ratelimit-policy"] == '"write";q=5;w=60'
        remaining.append(response.headers["ratelimit"].split(";")[1])
    assert remaining == ["r=4", "r=3", "r=2", "r=1", "r=0"]
    refused = clients[1].post("/v1/users", json={"name": "Ada", "age": 36})
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    reset = int(refused.headers["ratelimit"].rsplit("t=", 1)[1])
    assert refused.headers["retry-after"] == str(reset) and 1 <= reset <= 60
    # Reads have their own budget.
    assert clients[0].get("/v1/users").headers["ratelimit"].startswith('"read";r=19;')
    for client in clients:
        client.close()


def test_stopping_redis_mid_load_keeps_answering_and_each_worker_counts_alone(services, redis):
    load = Load(services, key("survivor"))
    load.start()
    time.sleep(2)
    stopped_at = time.monotonic()
    redis.stop()
    time.sleep(3)
    redis.start()  # the same port, empty
    restarted_at = time.monotonic()
    time.sleep(2.5)
    results = load.finish()

    statuses = Counter(status for _, status, _ in results)
    assert set(statuses) <= {200, 429}, statuses  # never a 500
    assert max(elapsed for _, _, elapsed in results) < 1.5  # no request hung on Redis
    # While Redis was down each of the four workers counted alone: more got through
    # than the shared limit allows, but no more than four workers' worth.
    during = [s for done, s, _ in results if stopped_at + 1 <= done < stopped_at + 3]
    assert READ_RATE * 2 < during.count(200) <= 4 * READ_RATE * 2 * 1.1, Counter(during)
    after = [s for done, s, _ in results if restarted_at + 1.5 <= done]
    assert 429 in after  # shared again: refusals are back

    for server in services:
        assert metric(server, "rate_limit_store_errors_total") >= 1
        assert metric(server, "rate_limit_local_decisions_total") >= 1
        failures = log_events(server, "rate limit store failed")
        assert 1 <= len(failures) <= 2, failures  # once per worker, not per request
        assert len({line["pid"] for line in failures}) == len(failures)
        assert log_events(server, "rate limit store answers again")


def served(server: LiveServer, path: str) -> list[tuple[float, float, dict[str, object]]]:
    """(start, end, line) of each access line for `path`, from the server's own clock."""
    spans = []
    for line in log_events(server, "request"):
        if line.get("path") == path:
            end = datetime.fromisoformat(str(line["timestamp"])).timestamp()
            spans.append((end - float(str(line["duration_ms"])) / 1000, end, line))
    return spans


def test_a_frozen_redis_costs_a_bounded_wait_and_blocks_nothing_else(tmp_path):
    own = start_redis(tmp_path)
    server = start_gunicorn(
        tmp_path,
        migrated(f"sqlite:///{tmp_path}/users.sqlite3"),
        workers=1,
        api_keys=",".join([API_KEYS, KEYS["frozen"][1]]),
        RATE_LIMITS=LIMITS,
        RATE_LIMIT_STORAGE=own.url,
    )
    try:
        with server.client(key("frozen")) as http:
            assert http.get("/v1/users").status_code == 200  # connected while it answers
            own.freeze()
            answers: list[tuple[int, float]] = []

            def limited() -> None:
                started = time.monotonic()
                status = http.get("/v1/users").status_code
                answers.append((status, time.monotonic() - started))

            waiting = [threading.Thread(target=limited) for _ in range(5)]
            for thread in waiting:
                thread.start()
            time.sleep(0.1)
            assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
            for thread in waiting:
                thread.join(10)
        assert [status for status, _ in answers] == [200] * 5
        # Each waits at most two timeouts (0.25 s and one reconnect), never longer.
        assert max(elapsed for _, elapsed in answers) < 1.0, answers
        # The only worker answered the probe while a limited request waited on Redis
        # (the server's own times): redis-py's socket wait yielded to gevent.
        (probe,) = served(server, "/healthz")[-1:]
        waited = [span for span in served(server, "/v1/users") if span[1] - span[0] >= 0.2]
        assert any(start < probe[0] and probe[1] < end for start, end, _ in waited), (
            probe,
            waited,
        )
    finally:
        own.stop()
        server.stop()
