"""A database that cannot serve now: 503 with Retry-After, a problem, and nothing changed."""

from dataclasses import replace

import pytest
import sqlalchemy as sa

import storage
from tests.conftest import migrated
from tests.test_users_api import assert_problem


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


def test_no_free_connection_in_time_is_503(app, client, user):
    with app.app.extensions["user_store"].engine.connect():  # the worker's only connection
        response = client.get(f"/v1/users/{user['id']}")
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "1"
