"""A database that cannot serve now: 503 with Retry-After, a problem, and nothing changed."""

import json
from dataclasses import replace

import pytest
import sqlalchemy as sa

import storage
from tests.helpers import assert_problem, free_port, log_lines, migrated


@pytest.fixture
def settings(settings, database_url):
    # On each database: one connection per worker, and a short wait for it or for a lock.
    return replace(
        settings,
        database_url=migrated(database_url),
        db_pool_size=1,
        db_max_overflow=0,
        db_timeout=0.3,
    )


@pytest.fixture
def user(client):
    return client.post("/v1/users", json={"name": "Ada", "age": 36}).json()


def test_a_write_behind_another_writers_lock_is_503_and_changes_nothing(client, settings, user):
    other = storage.make_engine(settings.database_url)
    with other.connect() as holder:
        # Another writer's open transaction: the row's lock (the file's, on SQLite).
        holder.execute(sa.text("UPDATE users SET age = 40"))
        response = client.put(f"/v1/users/{user['id']}", json={"name": "Eve", "age": 1})
        holder.rollback()
    other.dispose()
    problem = assert_problem(response, 503)
    assert response.headers["retry-after"] == "1"
    assert "try again" in problem["detail"]
    assert client.get(f"/v1/users/{user['id']}").json() == user


def test_no_free_connection_in_time_is_503(app, client, user, capsys):
    capsys.readouterr()
    with app.app.extensions["user_store"].engine.connect():  # the worker's only connection
        response = client.get(f"/v1/users/{user['id']}")
    problem = assert_problem(response, 503)
    assert problem["detail"] == "The database is busy or unreachable right now; please try again."
    assert response.headers["retry-after"] == "1"
    logged = log_lines(capsys)
    [warning] = [line for line in logged if line["level"] == "warning"]
    assert warning["event"] == "database unavailable"
    assert warning["reason"] == "no database connection became free in time"
    assert warning["request_id"] == problem["request_id"]


def test_readiness_is_503_while_the_database_is_unreachable(app, anonymous, capsys):
    store = app.app.extensions["user_store"]
    reachable = store.engine
    # A PostgreSQL port nobody listens on: the connection is refused at once.
    store.engine = storage.make_engine(f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    try:
        capsys.readouterr()
        ready = anonymous.get("/readyz")
        alive = anonymous.get("/healthz")
        out = capsys.readouterr().out
    finally:
        store.engine.dispose()
        store.engine = reachable
    assert assert_problem(ready, 503)["detail"] == "The database is not reachable."
    assert ready.headers["retry-after"] == "1"
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})  # it asks no database
    warnings = [json.loads(line) for line in out.splitlines() if "database not ready" in line]
    assert [(w["level"], w["error"]) for w in warnings] == [("warning", "StoreUnavailable")]
    assert anonymous.get("/readyz").json() == {"status": "ok"}
