"""Shared fixtures: a fresh database per test (SQLite file, or a schema on real PostgreSQL)."""

import copy
import os
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from connexion.spec import Specification
from sqlalchemy.engine import make_url

import connexion_ext
import storage
from app import create_app
from logging_ext import metrics
from settings import Settings
from tests.helpers import API_KEYS, WRITE_KEY, LiveServer, migrated, start_gunicorn

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _check_each_spec_once() -> None:
    """Each test builds its own app, and connexion checks the spec against the OpenAPI
    meta-schema in every add_api: two thirds of building a test's app (45 of 67 ms), and
    so most of `make test`'s and `make mutation`'s time. The check depends on the spec
    alone, so the suite runs it once per distinct spec: a spec that a test or a mutant
    changes is checked anew. Tests only: Specification._validate_spec is a connexion
    internal, and if it moves this fails at import."""
    check = Specification.__dict__["_validate_spec"].__func__
    passed: list[tuple[type, dict]] = []  # type: ignore[type-arg]

    def check_once(cls: type, spec: dict) -> None:  # type: ignore[type-arg]
        if not any(cls is kind and spec == seen for kind, seen in passed):
            check(cls, spec)
            passed.append((cls, copy.deepcopy(spec)))

    Specification._validate_spec = classmethod(check_once)


_check_each_spec_once()


def _postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used for tests, or None when it can."""
    engine = storage.make_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:  # any failure means: skip, and say why
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway database on the real server, dropped when the session ends."""
    reason = _postgres_unreachable()
    if reason:
        pytest.skip(
            f"PostgreSQL at {POSTGRES_URL} is not reachable ({reason}); set TEST_POSTGRES_URL"
        )
    name = f"users_api_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        storage.engine.normalise_url(POSTGRES_URL), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """The throwaway database, emptied: every test starts from no schema at all."""
    engine = storage.make_engine(postgres_server)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return postgres_server


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    return f"sqlite:///{tmp_path}/users.sqlite3"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs twice: on SQLite and on the real PostgreSQL server."""
    url: str = request.getfixturevalue(f"{request.param.replace('postgresql', 'postgres')}_url")
    return url


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return Settings(
        database_url=migrated(sqlite_url),
        validate_responses=True,
        api_keys=tuple(API_KEYS.split(",")),
    )


@pytest.fixture
def app(settings: Settings):  # type: ignore[no-untyped-def]
    # The metrics' label children are found once per process; each app finds its own,
    # so no test passes on children an earlier test's requests made.
    metrics._request_children.clear()
    application = create_app(settings)
    yield application
    application.app.extensions["user_store"].engine.dispose()


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    """connexion's in-process test client (whole ASGI stack, no socket), with a write key."""
    with app.test_client(headers={"X-API-Key": WRITE_KEY}) as test_client:
        yield test_client


@pytest.fixture
def anonymous(app):  # type: ignore[no-untyped-def]
    """A test client that sends no API key."""
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def to_wsgi():  # type: ignore[no-untyped-def]
    """connexion_ext.to_wsgi: the app as gunicorn's gevent worker calls it, in process.

    Each bridge starts an event-loop thread (a2wsgi's, for Swagger UI's files); it is
    stopped after the test, so no test leaves threads behind for a later fork.
    """
    loops = []

    def bridge(app, **kwargs):  # type: ignore[no-untyped-def]
        wsgi = connexion_ext.to_wsgi(app, **kwargs)
        loops.append(wsgi.with_loop.loop)
        return wsgi

    yield bridge
    for loop in loops:
        loop.call_soon_threadsafe(loop.stop)
    deadline = time.monotonic() + 10
    while any(loop.is_running() for loop in loops):
        assert time.monotonic() < deadline, "a bridge's event loop did not stop"
        threading.Event().wait(0.01)
    for loop in loops:
        loop.close()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One gunicorn (gevent workers, gunicorn.conf.py) on a throwaway SQLite database."""
    tmp_path = tmp_path_factory.mktemp("live")
    server = start_gunicorn(tmp_path, f"sqlite:///{tmp_path}/live.sqlite3", workers=2)
    yield server
    server.stop()


@pytest.fixture
def live_client(live_server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client of the live server, which starts each test with no users."""
    engine = storage.make_engine(live_server.env["DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM users"))
    engine.dispose()
    with live_server.client() as http:
        yield http


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """make mutation runs each mutant's tests by node id, and pytest cannot find an id
    that holds a backslash (repr's "\\xa0"): such a test would count every mutant killed."""
    unselectable = [item.nodeid for item in items if "\\" in item.nodeid]
    if unselectable:
        raise pytest.UsageError(
            f"test ids must not hold a backslash (tests.helpers.plain_id): {unselectable[:3]}"
        )


# .ci/run sets this: there every server and tool a test needs is installed or started
# first, so a skip means a check silently did not run, and that must not pass as green.
NO_SKIPS = os.environ.get("USERS_API_NO_SKIPS") == "1"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if NO_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but USERS_API_NO_SKIPS=1 (.ci/run) allows none: {reason}"
    return report
