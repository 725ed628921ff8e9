"""The whole API through PgBouncer in transaction mode (DB_POOLER=transaction).

A transaction pooler hands each transaction to whichever server connection is free:
prepared statements and session settings (lock_timeout sent in `options`) do not follow
the client. Two gevent workers under concurrency make sure they would be missed.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

import storage
from tests.helpers import assert_problem, migrated, start_gunicorn, start_pgbouncer

pytestmark = pytest.mark.postgres

DB_TIMEOUT = 1.0
CLIENTS = 16


@pytest.fixture
def pgbouncer(tmp_path, postgres_url):
    bouncer = start_pgbouncer(tmp_path, postgres_url, pool_mode="transaction", pool_size=8)
    yield bouncer
    bouncer.stop()


@pytest.fixture
def server(tmp_path, pgbouncer):
    # Migrated through the pooler too: the preflight's advisory lock is per transaction.
    live = start_gunicorn(
        tmp_path, pgbouncer.url, workers=2, DB_POOLER="transaction", DB_TIMEOUT=str(DB_TIMEOUT)
    )
    yield live
    live.stop()


def one_client_session(http: httpx.Client, n: int) -> list[int]:
    """A user's whole life, with repeated reads (psycopg prepares a statement on its
    fifth run) and pages; returns every status seen."""
    statuses = []
    created = http.post("/v1/users", json={"name": f"client {n}", "age": n % 140})
    statuses.append(created.status_code)
    user = created.json()
    url = f"/v1/users/{user['id']}"
    for _ in range(8):
        got = http.get(url)
        statuses.append(got.status_code)
        assert got.status_code != 200 or got.json()["name"] == f"client {n}"
        statuses.append(http.get("/v1/users", params={"limit": 5}).status_code)
    etag = http.get(url).headers.get("etag", "")
    replaced = http.put(url, json={"name": f"renamed {n}", "age": 1}, headers={"If-Match": etag})
    statuses.append(replaced.status_code)
    stale = http.put(url, json={"name": "stale", "age": 2}, headers={"If-Match": etag})
    statuses.append(stale.status_code)
    patched = http.patch(
        url,
        content=b'{"age": 3}',
        headers={
            "If-Match": replaced.headers.get("etag", ""),
            "Content-Type": "application/merge-patch+json",
        },
    )
    statuses.append(patched.status_code)
    statuses.append(
        http.delete(url, headers={"If-Match": patched.headers.get("etag", "")}).status_code
    )
    statuses.append(http.get(url).status_code)
    return statuses


def test_the_api_through_pgbouncer_in_transaction_mode(server, pgbouncer):
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    with server.client(limits=limits) as http, ThreadPoolExecutor(CLIENTS) as pool:
        sessions = list(pool.map(lambda n: one_client_session(http, n), range(CLIENTS * 3)))
        # Keyset pages walk the rest without overlap while the directory changes.
        for n in range(30):
            assert http.post("/v1/users", json={"name": f"kept {n}", "age": n}).status_code == 201
        seen, after = [], 0
        while True:
            page = http.get("/v1/users", params={"limit": 7, "after": after}).json()
            seen += [user["id"] for user in page["items"]]
            if page["next"] is None:
                break
            after = seen[-1]
    for statuses in sessions:
        assert statuses == [201] + [200] * 16 + [200, 412, 200, 204, 404]
    assert len(seen) == len(set(seen)) == 30
    for log in (server.log(), pgbouncer.log()):
        assert "prepared statement" not in log
    assert server.error_lines() == []


def test_concurrent_if_match_increments_through_pgbouncer_lose_nothing(server):
    with server.client() as http:
        user = http.post("/v1/users", json={"name": "0", "age": 0}).json()
    url = f"/v1/users/{user['id']}"
    wins, conflicts = [], []

    def increment(_worker: int) -> None:
        with server.client() as http:
            for _ in range(15):
                while True:
                    current = http.get(url)
                    body = current.json()
                    response = http.put(
                        url,
                        json={"name": str(int(body["name"]) + 1), "age": 0},
                        headers={"If-Match": current.headers["etag"]},
                    )
                    if response.status_code == 200:
                        wins.append(1)
                        break
                    assert_problem(response, 412)
                    conflicts.append(1)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(increment, range(8)))
    with server.client() as http:
        final = http.get(url).json()
    assert int(final["name"]) == len(wins) == 8 * 15
    assert conflicts, "the increments never raced: the test proves nothing"


def test_a_lock_wait_through_pgbouncer_still_ends_in_503_within_db_timeout(server, postgres_url):
    with server.client() as http:
        user = http.post("/v1/users", json={"name": "Ada", "age": 36}).json()
    # Another writer holds the row, straight on PostgreSQL (not through the pooler).
    holder_engine = storage.make_engine(migrated(postgres_url))
    with holder_engine.connect() as holder:
        holder.execute(sa.text("UPDATE users SET age = 40 WHERE id = :id"), {"id": user["id"]})
        try:
            with server.client(timeout=DB_TIMEOUT + 4) as http:
                started = time.monotonic()
                try:
                    response = http.put(f"/v1/users/{user['id']}", json={"name": "Eve", "age": 1})
                except httpx.ReadTimeout:
                    pytest.fail("the request waited on the lock past DB_TIMEOUT: timeout lost")
                elapsed = time.monotonic() - started
            # The server gave up the wait too (lock_timeout, set in the transaction), so
            # no backend is left queued behind the row while the holder keeps it.
            left_waiting = waiting_for_locks(holder_engine, within=1.0)
        finally:
            holder.rollback()
    holder_engine.dispose()
    assert_problem(response, 503)
    assert elapsed < DB_TIMEOUT + 1.5
    assert left_waiting == 0, "a backend still waits on the row lock: lock_timeout was lost"
    with server.client() as http:
        assert http.get(f"/v1/users/{user['id']}").json()["name"] == "Ada"


def waiting_for_locks(engine: sa.Engine, within: float) -> int:
    """Backends of this database waiting on a lock, polled until none or `within` s."""
    deadline = time.monotonic() + within
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    while True:
        with engine.connect() as conn:
            waiting = int(conn.execute(query).scalar_one())
        if waiting == 0 or time.monotonic() > deadline:
            return waiting
        time.sleep(0.05)


def test_an_unknown_pooler_is_refused_at_start(tmp_path, postgres_url):
    with pytest.raises(ValueError, match="DB_POOLER"):
        storage.make_engine(postgres_url, pooler="statement")
