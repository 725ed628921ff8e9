"""Probes: /healthz stays cheap; /readyz says 503, with Retry-After, when the instance
cannot serve now (its database does not answer, or it is stopping)."""

import pytest

import lifecycle
import storage
from tests.helpers import assert_problem, free_port, log_lines


@pytest.fixture
def unreachable_database(app):  # type: ignore[no-untyped-def]
    """The app's store swapped for one on a port where no database listens."""
    kept = app.app.extensions["user_store"]
    engine = storage.make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/none", wait=1)
    app.app.extensions["user_store"] = storage.UserStore(engine)
    yield
    app.app.extensions["user_store"] = kept
    engine.dispose()


@pytest.fixture
def stopping():  # type: ignore[no-untyped-def]
    lifecycle.begin_draining()
    yield
    lifecycle.end_draining()


def test_ready_while_the_database_answers(anonymous):
    response = anonymous.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_not_ready_without_a_database_says_when_to_ask_again(
    anonymous, unreachable_database, capsys
):
    capsys.readouterr()
    response = anonymous.get("/readyz")
    assert assert_problem(response, 503)["detail"] == "The database is not reachable."
    logged = log_lines(capsys)
    [warning] = [line for line in logged if line["level"] == "warning"]
    assert warning["event"] == "database not ready" and warning["error"] == "StoreUnavailable"
    assert int(response.headers["retry-after"]) >= 1
    assert anonymous.get("/healthz").status_code == 200


def test_not_ready_while_stopping_but_still_alive_and_serving(anonymous, client, stopping):
    response = anonymous.get("/readyz")
    body = assert_problem(response, 503)
    assert body["detail"] == "This instance is stopping; send requests elsewhere."
    assert int(response.headers["retry-after"]) >= 1
    assert anonymous.get("/healthz").status_code == 200
    assert client.post("/v1/users", json={"name": "Ada", "age": 36}).status_code == 201
