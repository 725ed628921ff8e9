"""UserStore on each real database: SQLite and PostgreSQL run the same tests."""

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import storage
from storage import UserNotFound, UserStore, VersionMismatch
from storage.migrate import _config as migration_config
from storage.pool import FairQueuePool, Gate
from tests.helpers import migrated

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(database_url):
    # Conditional writes are built once per process and shape; each test builds its
    # own, so none passes on statements an earlier test built.
    storage.users._update.cache_clear()
    storage.users._delete.cache_clear()
    engine = storage.make_engine(migrated(database_url), pool_size=20)
    yield UserStore(engine)
    engine.dispose()


def test_create_then_get_round_trips_every_field(store):
    created = store.create(name="Ada", age=36)
    assert store.get(created.id) == created
    assert created.version == 1
    assert created.created_at.tzinfo is not None
    assert created.created_at == created.updated_at


def test_an_engine_made_without_settings_gets_the_services_defaults(sqlite_url):
    # Tools, migrations and tests make engines from a URL alone: they get what the
    # service runs with when nothing is configured.
    from settings import Settings

    engine = storage.make_engine(sqlite_url)
    defaults = Settings()
    try:
        assert engine.pool.size() == defaults.db_pool_size
        assert engine.pool._max_overflow == defaults.db_max_overflow
        assert engine.pool.timeout() == defaults.db_timeout
        assert UserStore(engine).deadline == defaults.db_timeout
    finally:
        engine.dispose()
    with pytest.raises(ValueError, match="DB_POOLER must be one of none, transaction, got 'x'"):
        storage.make_engine(sqlite_url, pooler="x")


def test_a_user_has_the_table_columns_in_their_order():
    # storage.users builds a User from each row by position.
    from dataclasses import fields

    from storage.tables import users

    assert [column.name for column in users.c] == [field.name for field in fields(storage.User)]


def test_under_gevent_a_call_ends_at_the_pool_timeout_and_without_one_runs_on(
    sqlite_url, monkeypatch
):
    # Only gevent can cut a wait short; a process without its patches gets no Timeout.
    import gevent

    from storage import users

    bounded = UserStore(storage.make_engine(sqlite_url, wait=0.05))
    unbounded = UserStore(sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool))
    assert (bounded.deadline, unbounded.deadline) == (0.05, 0.0)
    monkeypatch.setattr(users, "is_module_patched", lambda module: module == "socket")
    with pytest.raises(gevent.Timeout), bounded._in_time():
        gevent.sleep(1)
    with unbounded._in_time():
        gevent.sleep(0.1)
    monkeypatch.setattr(users, "is_module_patched", lambda module: False)
    with bounded._in_time():
        gevent.sleep(0.1)


def test_get_unknown_id_raises(store):
    with pytest.raises(UserNotFound):
        store.get(2**62)


def test_update_changes_given_fields_and_bumps_version(store):
    user = store.create(name="Ada", age=36)
    updated = store.update(user.id, {"age": 37}, versions=None)
    assert (updated.name, updated.age, updated.version) == ("Ada", 37, 2)
    assert updated.created_at == user.created_at
    assert updated.updated_at > user.updated_at


def test_a_version_past_32_bits_still_counts_up(store):
    # One user updated 2^31 times (a counter-like record, a busy client) must not hit
    # the column's limit: the ETag promises any positive int64 (etags.py).
    user = store.create(name="Ada", age=36)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET version = :v"), {"v": 2**31 - 1})
    updated = store.update(user.id, {"age": 37}, versions=[2**31 - 1])
    assert (updated.age, updated.version) == (37, 2**31)
    assert store.update(user.id, {"age": 38}, versions=[2**31]).version == 2**31 + 1
    assert store.get(user.id).version == 2**31 + 1


def test_a_write_naming_any_int64_version_is_a_mismatch_not_an_error(store):
    # If-Match may name any version up to int64's largest (etags.py): past what the
    # column holds, it matches nothing, like any other stale version.
    user = store.create(name="Ada", age=36)
    for version in (2**31, 2**63 - 1):
        with pytest.raises(VersionMismatch):
            store.update(user.id, {"age": 37}, versions=[version])
        with pytest.raises(VersionMismatch):
            store.delete(user.id, versions=[1], excluded=[version, 1])
        with pytest.raises(VersionMismatch):
            store.delete(user.id, versions=[version])
    assert store.get(user.id) == user


def test_update_with_stale_version_changes_nothing(store):
    user = store.create(name="Ada", age=36)
    store.update(user.id, {"age": 37}, versions={1})
    with pytest.raises(VersionMismatch):
        store.update(user.id, {"age": 99}, versions={1})
    assert store.get(user.id).age == 37


def test_an_excluded_current_version_blocks_update_and_delete(store):
    user = store.create(name="Ada", age=36)
    for changes in ({"age": 37}, {}):
        with pytest.raises(VersionMismatch):
            store.update(user.id, changes, versions=None, excluded={1, 7})
    with pytest.raises(VersionMismatch):
        store.delete(user.id, versions=None, excluded={1})
    assert store.get(user.id) == user
    assert store.update(user.id, {"age": 37}, versions={1}, excluded={7}).version == 2


def test_no_version_allowed_changes_nothing(store):
    # If-None-Match: * on a write: the set of versions it may change is empty.
    user = store.create(name="Ada", age=36)
    with pytest.raises(VersionMismatch):
        store.update(user.id, {"age": 37}, versions=set())
    with pytest.raises(VersionMismatch):
        store.delete(user.id, versions=set())
    assert store.get(user.id) == user


def test_writes_of_every_shape_change_what_they_name(store):
    # One statement per shape (fields, version conditions), each call its own values.
    ada, eve = store.create(name="Ada", age=36), store.create(name="Eve", age=20)
    assert store.update(ada.id, {"age": 37}, versions={1, 5}).age == 37
    assert store.update(eve.id, {"age": 21}, versions=None).age == 21
    renamed = store.update(ada.id, {"name": "Ada L."}, versions={2}, excluded={9})
    assert (renamed.name, renamed.age, renamed.version) == ("Ada L.", 37, 3)
    assert store.get(eve.id).name == "Eve"
    store.delete(eve.id, versions={2}, excluded={1})
    with pytest.raises(UserNotFound):
        store.get(eve.id)
    assert store.get(ada.id) == renamed


def test_update_and_delete_of_unknown_id_raise_not_found(store):
    with pytest.raises(UserNotFound):
        store.update(12345, {"age": 1}, versions={1})
    with pytest.raises(UserNotFound):
        store.delete(12345, versions=None)


def test_delete_with_stale_version_keeps_the_user(store):
    user = store.create(name="Ada", age=36)
    with pytest.raises(VersionMismatch):
        store.delete(user.id, versions={7})
    store.delete(user.id, versions={1})
    with pytest.raises(UserNotFound):
        store.get(user.id)


def test_pages_are_keyset_ordered_and_report_more(store):
    ids = [store.create(name=f"u{i}", age=i).id for i in range(5)]
    first, total, more = store.page(after=0, limit=2)
    assert [u.id for u in first] == ids[:2] and total == 5 and more
    last, _total, more = store.page(after=ids[3], limit=2)
    assert [u.id for u in last] == ids[4:] and not more
    exact, _total, more = store.page(after=ids[2], limit=2)  # the rest fits exactly
    assert [u.id for u in exact] == ids[3:] and not more


def test_a_write_changes_that_user_only(store):
    ada, eve = store.create(name="Ada", age=36), store.create(name="Eve", age=30)
    store.update(ada.id, {"age": 37}, versions={1})
    store.delete(ada.id, versions=None)
    assert store.get(eve.id) == eve and store.count() == 1


def test_a_failed_write_leaves_no_partial_row(store):
    with pytest.raises(sa.exc.IntegrityError):
        store.create(name=None, age=3)  # type: ignore[arg-type]
    assert store.count() == 0


def test_concurrent_creates_get_distinct_ids(store):
    ids: list[int] = []
    lock = threading.Lock()

    def create_some() -> None:
        for i in range(10):
            user = store.create(name=f"t{i}", age=i)
            with lock:
                ids.append(user.id)

    threads = [threading.Thread(target=create_some) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 80 == len(set(ids)) == store.count()


def test_concurrent_conditional_updates_let_exactly_one_win(store):
    user = store.create(name="Ada", age=36)
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def edit(age: int) -> None:
        barrier.wait()
        try:
            store.update(user.id, {"age": age}, versions={user.version})
            outcomes.append("won")
        except VersionMismatch:
            outcomes.append("412")

    threads = [threading.Thread(target=edit, args=(age,)) for age in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["412"] * 5 + ["won"]
    assert store.get(user.id).version == 2


def test_migrations_are_idempotent(database_url):
    engine = storage.make_engine(migrated(database_url))
    store = UserStore(engine)
    ada = store.create(name="Ada", age=36)
    before = _schema(engine)
    storage.upgrade(engine)  # again: nothing to do, nothing lost
    migrated(database_url)  # the migration step again, as a restart runs it
    storage.check_current(engine)
    assert _schema(engine) == before
    assert _revision(engine) == _head() is not None
    assert store.get(ada.id) == ada and store.count() == 1
    engine.dispose()


def test_the_migrations_build_the_schema_the_code_describes(database_url):
    # storage/tables.py is what the queries are built from (and cast to); the
    # migrations are what the database holds. Any difference, a column's type included,
    # is a migration someone forgot.
    engine = storage.make_engine(migrated(database_url))
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), storage.tables.metadata)
    engine.dispose()
    assert differences == []


def test_users_made_before_the_version_widened_keep_counting_after_it(database_url):
    engine = storage.make_engine(database_url)
    config = migration_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    store = UserStore(engine)
    ada = store.create(name="Ada", age=36)
    storage.upgrade(engine)
    assert _revision(engine) == _head()
    assert store.get(ada.id) == ada
    assert store.update(ada.id, {"age": 37}, versions=[1]).version == 2
    engine.dispose()


def test_a_migration_refuses_an_unknown_pooler_as_the_service_does(database_url):
    with pytest.raises(ValueError, match="DB_POOLER must be one of"):
        storage.migrate(database_url, wait=5.0, pooler="statement")


def test_a_migration_waits_for_a_busy_sqlite_file_as_long_as_it_is_told(tmp_path):
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the file
    started = time.monotonic()
    try:
        with pytest.raises(sa.exc.OperationalError, match="database is locked"):
            storage.migrate(f"sqlite:///{path}", wait=0.2, pooler="none")
        assert 0.2 <= time.monotonic() - started < 3  # not the default 5 s
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _schema(engine):
    inspector = sa.inspect(engine)
    return {
        table: [(column["name"], str(column["type"])) for column in inspector.get_columns(table)]
        for table in inspector.get_table_names()
    }


def _revision(engine):
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _head():
    return ScriptDirectory.from_config(migration_config()).get_current_head()


def _hold_the_migration_lock(url):  # type: ignore[no-untyped-def]
    """Another replica migrating: a connection holding the advisory lock until closed."""
    holder = psycopg.connect(
        sa.engine.make_url(url).set(drivername="postgresql").render_as_string(False)
    )
    holder.execute("SELECT pg_advisory_lock(%s)", (storage.MIGRATION_LOCK,))
    return holder


@pytest.mark.postgres
def test_a_migration_waits_for_another_replicas_past_the_requests_timeouts(postgres_url):
    # Requests give up on a lock or a statement after DB_TIMEOUT (0.2 s here); a starting
    # replica waits for the one migrating as long as `lock_wait`, then migrates.
    engine = storage.make_engine(postgres_url, wait=0.2)
    holder = _hold_the_migration_lock(postgres_url)
    threading.Timer(0.8, holder.close).start()
    started = time.monotonic()
    storage.upgrade(engine, lock_wait=10)
    assert time.monotonic() - started >= 0.7
    assert _revision(engine) == _head()
    engine.dispose()


@pytest.mark.postgres
def test_a_migration_gives_up_after_waiting_lock_wait(postgres_url):
    engine = storage.make_engine(postgres_url, wait=5)
    holder = _hold_the_migration_lock(postgres_url)
    started = time.monotonic()
    try:
        with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
            storage.upgrade(engine, lock_wait=0.3)
    finally:
        holder.close()
    assert 0.3 <= time.monotonic() - started < 3
    assert _revision(engine) is None  # nothing half done
    engine.dispose()


@pytest.mark.postgres
def test_the_migration_lock_puts_the_lock_timeout_back_and_lifts_the_statement_timeout(
    postgres_url,
):
    # The migration's own DDL still gives up on a busy table after DB_TIMEOUT, but may
    # run longer than a request's statement_timeout; both only inside its transaction.
    from storage.migrate import _lock_for_migration

    engine = storage.make_engine(postgres_url, wait=0.25)

    def settings(conn):  # type: ignore[no-untyped-def]
        names = ("lock_timeout", "statement_timeout")
        return [conn.execute(sa.text(f"SHOW {name}")).scalar_one() for name in names]

    with engine.begin() as conn:
        assert settings(conn) == ["250ms", "250ms"]
        _lock_for_migration(conn, 30)
        assert settings(conn) == ["250ms", "0"]
        # pg_locks shows the whole server's: another test run's locks are not ours.
        held = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        ).scalar_one()
        assert held == 1
    with engine.connect() as conn:
        assert settings(conn) == ["250ms", "250ms"]
    engine.dispose()


@pytest.mark.postgres
def test_behind_a_transaction_pooler_each_transaction_sets_its_timeouts(postgres_url):
    # No connection `options` there (PgBouncer refuses them): both timeouts are set in
    # each transaction instead; the migration lock puts lock_timeout back after its own
    # wait and lifts statement_timeout for the migration.
    from storage.migrate import _lock_for_migration

    def timeouts(conn: sa.Connection) -> tuple[str, str]:
        show = "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
        lock, statement = conn.execute(sa.text(show)).one()
        return lock, statement

    engine = storage.make_engine(postgres_url, wait=0.25, pooler="transaction")
    with engine.begin() as conn:
        assert timeouts(conn) == ("250ms", "250ms")
        _lock_for_migration(conn, 30)
        assert timeouts(conn) == ("250ms", "0")
    with engine.connect() as conn:  # a fresh transaction sets them again
        assert timeouts(conn) == ("250ms", "250ms")
    engine.dispose()


@pytest.mark.postgres
def test_behind_a_transaction_pooler_nothing_is_prepared_or_kept_in_the_session(postgres_url):
    def session(engine: sa.Engine) -> tuple[Any, str]:
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            raw.commit()  # outside any transaction: what the session itself holds
            raw.autocommit = True
            return raw.prepare_threshold, raw.execute("SHOW lock_timeout").fetchone()[0]

    direct = storage.make_engine(postgres_url, wait=0.25)
    pooled = storage.make_engine(postgres_url, wait=0.25, pooler="transaction")
    assert session(direct) == (5, "250ms")  # psycopg's default: prepared on the 5th run
    assert session(pooled) == (None, "0")
    direct.dispose()
    pooled.dispose()


def test_a_transaction_pooler_setting_means_nothing_to_sqlite(sqlite_url):
    engine = storage.make_engine(migrated(sqlite_url), pooler="transaction")
    assert UserStore(engine).count() == 0
    engine.dispose()


def test_an_unmigrated_database_is_refused(database_url):
    engine = storage.make_engine(database_url)
    with pytest.raises(storage.SchemaOutOfDate, match="make migrate"):
        storage.check_current(engine)
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u:p@h:5/db", "postgresql+psycopg://u:p@h:5/db"),  # the password kept
        (  # only the scheme is rewritten
            "postgres://u@h/db?application_name=postgres://x",
            "postgresql+psycopg://u@h/db?application_name=postgres%3A%2F%2Fx",
        ),
        ("sqlite:///x.db", "sqlite:///x.db"),
        ("sqlite+pysqlite:///x.db", "sqlite+pysqlite:///x.db"),
    ],
)
def test_database_urls_are_normalised(url, normalised):
    assert storage.engine.normalise_url(url) == normalised


MEMORY = "DATABASE_URL names an in-memory SQLite database; use a file"


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("mysql://h/db", "DATABASE_URL uses 'mysql'; use sqlite:///path or postgresql://..."),
        ("not a url", "DATABASE_URL is not a database URL: Could not parse SQLAlchemy URL"),
        ("", "DATABASE_URL is not a database URL: Could not parse SQLAlchemy URL"),
        ("sqlite://", MEMORY),
        ("sqlite:///", MEMORY),
        ("sqlite:///:memory:", MEMORY),
    ],
)
def test_unusable_database_urls_are_refused_saying_why(url, refusal):
    with pytest.raises(storage.DatabaseURLError) as refused:
        storage.engine.normalise_url(url)
    assert str(refused.value).startswith(refusal)


@pytest.mark.postgres
def test_repeated_reads_run_a_prepared_statement_on_postgresql(postgres_url):
    # psycopg prepares a query on its fifth run, but a ROLLBACK drops every prepared
    # statement; a read that ends its transaction with one never gets there.
    engine = storage.make_engine(migrated(postgres_url), pool_size=1, max_overflow=0)
    store = UserStore(engine)
    user = store.create(name="Ada", age=36)
    for _ in range(6):
        store.get(user.id)
    with engine.connect() as conn:
        prepared = conn.execute(sa.text("SELECT statement FROM pg_prepared_statements"))
        statements = prepared.scalars().all()
    engine.dispose()
    assert any("WHERE users.id = $1" in statement for statement in statements), statements


@pytest.fixture
def impatient_store(database_url):
    """A store that waits at most 0.3 s for a connection or for another writer's lock."""
    engine = storage.make_engine(migrated(database_url), pool_size=1, max_overflow=0, wait=0.3)
    yield UserStore(engine)
    engine.dispose()


def test_a_write_behind_another_writers_lock_is_unavailable_and_changes_nothing(impatient_store):
    user = impatient_store.create(name="Ada", age=36)
    other = storage.make_engine(impatient_store.engine.url.render_as_string(hide_password=False))
    with other.connect() as holder:
        # Another process's write transaction holds the lock on the row (the file, on SQLite).
        holder.execute(sa.text("UPDATE users SET age = 40 WHERE id = :id"), {"id": user.id})
        with pytest.raises(storage.StoreUnavailable):
            impatient_store.update(user.id, {"age": 37}, versions=None)
        holder.rollback()
    other.dispose()
    assert impatient_store.get(user.id).age == 36


def test_waiting_too_long_for_a_free_connection_is_unavailable(impatient_store):
    # Holding the pool's only connection:
    with impatient_store.engine.connect(), pytest.raises(storage.StoreUnavailable):
        impatient_store.get(1)


def _dbapi_error(cause):
    return sa.exc.OperationalError("statement", {}, cause)


@pytest.mark.parametrize(
    ("state", "transient"),
    [
        ("08006", True),  # connection failure
        ("53300", True),  # too many connections
        ("57P01", True),  # admin shutdown
        ("57P03", True),  # cannot connect now (starting up)
        ("55P03", True),  # lock_not_available (lock_timeout)
        ("40001", True),  # serialization failure
        ("40P01", True),  # deadlock detected
        ("57014", True),  # query canceled (statement_timeout)
        ("25006", True),  # read-only transaction (during a failover)
        ("57P04", False),  # database dropped
        ("42P01", False),  # undefined table: our fault
        ("28P01", False),  # invalid password: our configuration
    ],
)
def test_postgresql_errors_that_mean_not_now(state, transient):
    error = psycopg.errors.lookup(state)("message")
    assert storage.users.unavailable(_dbapi_error(error)) is transient


def test_sqlite_lock_is_not_now_and_a_missing_table_is_a_fault():
    import sqlite3

    for message in ("database is locked", "database is busy"):
        assert storage.users.unavailable(_dbapi_error(sqlite3.OperationalError(message)))
    assert not storage.users.unavailable(_dbapi_error(sqlite3.OperationalError("no such table")))


def test_a_connection_the_driver_invalidated_is_not_now_whatever_the_error():
    import sqlite3

    error = sa.exc.OperationalError(
        "statement", {}, sqlite3.OperationalError("disk I/O error"), connection_invalidated=True
    )
    assert storage.users.unavailable(error)


@pytest.mark.parametrize(("wait", "seconds", "ms"), [(0.3, 1, 300), (2.5, 3, 2500)])
def test_postgresql_waits_as_long_as_the_pool_and_the_url_wins(wait, seconds, ms):
    options = storage.engine._postgresql_options(wait, {}, False)
    assert options["pool_pre_ping"] is True  # a restarted server costs no burst of 500s
    assert options["pool_recycle"] == 1800
    direct = options["connect_args"]
    assert direct == {
        "connect_timeout": seconds,
        "options": f"-c lock_timeout={ms} -c statement_timeout={ms}",
        # a vanished host: sent data given up after the wait, an idle connection after
        # `seconds` of silence and three probes a second apart
        "tcp_user_timeout": ms,
        "keepalives": 1,
        "keepalives_idle": seconds,
        "keepalives_interval": 1,
        "keepalives_count": 3,
    }
    pooled = storage.engine._postgresql_options(wait, {}, True)["connect_args"]
    assert "options" not in pooled and pooled["prepare_threshold"] is None
    in_url = {"options": "-c lock_timeout=0", "connect_timeout": "9"}
    told = storage.engine._postgresql_options(wait, in_url, False)["connect_args"]
    assert not in_url.keys() & told.keys()
    assert told["tcp_user_timeout"] == ms


def test_a_deadline_is_found_anywhere_in_an_errors_chain():
    # The driver's cleanup after a gevent deadline fails with an error of its own; the
    # deadline is somewhere in what led to it, by __cause__ or by __context__.
    from storage.users import _interrupted_by

    deadline = TimeoutError("the deadline")
    driver, middle = OSError("driver"), KeyError("middle")
    driver.__cause__, middle.__context__ = middle, deadline
    assert _interrupted_by(driver, deadline)
    assert _interrupted_by(deadline, deadline)
    assert not _interrupted_by(OSError("alone"), deadline)
    looped = OSError("looped")
    looped.__context__ = KeyError("back")
    looped.__context__.__context__ = looped  # a cycle ends the search, unfound
    assert not _interrupted_by(looped, deadline)


def test_an_unreachable_postgresql_is_unavailable_within_the_wait(tmp_path):
    """A server that accepts connections and never answers (a black hole)."""
    import socket
    import time

    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)
        port = black_hole.getsockname()[1]
        engine = storage.make_engine(f"postgresql://nobody@127.0.0.1:{port}/none", wait=1)
        started = time.monotonic()
        with pytest.raises(storage.StoreUnavailable):
            UserStore(engine).get(1)
        assert time.monotonic() - started < 5
        engine.dispose()


class TestGate:
    """The pool's waiting line: first come, first served, and no one jumps it."""

    def waiter(self, gate, entered, name):
        thread = threading.Thread(target=lambda: gate.enter(10) and entered.append(name))
        thread.start()
        return thread

    def wait_for_line(self, gate, length):
        for _ in range(1000):
            if len(gate._waiting) == length:
                return
            threading.Event().wait(0.005)
        raise AssertionError(f"the line never reached {length}")

    def test_a_freed_place_goes_to_the_first_waiter_not_a_newcomer(self):
        gate, entered = Gate(1), []
        assert gate.enter(0)
        first = self.waiter(gate, entered, "first")
        self.wait_for_line(gate, 1)
        gate.leave()
        assert not gate.enter(0)  # a newcomer finds the place already handed over
        first.join(5)
        assert entered == ["first"]

    def test_waiters_get_in_in_the_order_they_came(self):
        gate, entered = Gate(1), []
        assert gate.enter(0)
        threads = []
        for name in ("a", "b", "c"):
            threads.append(self.waiter(gate, entered, name))
            self.wait_for_line(gate, len(threads))
        for expected in (["a"], ["a", "b"], ["a", "b", "c"]):
            gate.leave()
            threads[len(expected) - 1].join(5)
            assert entered == expected

    def test_a_place_handed_over_as_the_wait_times_out_is_kept(self, monkeypatch):
        gate = Gate(1)
        assert gate.enter(0)

        class LateTurn(threading.Event):
            def wait(self, timeout=None):
                gate.leave()  # the holder leaves just as the wait gives up
                return False

        monkeypatch.setattr(storage.pool.threading, "Event", LateTurn)
        assert gate.enter(0.01)  # the place was handed over: it is this caller's
        monkeypatch.undo()
        assert not gate._waiting
        assert not gate.enter(0)  # and it is held, not lost or freed twice
        gate.leave()
        assert gate.enter(0)

    def test_every_place_left_is_free_again_and_no_more(self):
        gate = Gate(2)
        assert gate.enter(0) and gate.enter(0) and not gate.enter(0)
        gate.leave()
        gate.leave()
        assert gate.enter(0) and gate.enter(0) and not gate.enter(0)

    def test_a_place_freed_while_the_turn_is_made_is_taken(self, monkeypatch):
        gate = Gate(1)
        assert gate.enter(0)

        class FreedMeanwhile(threading.Event):
            def __init__(self):  # type: ignore[no-untyped-def]
                super().__init__()
                gate.leave()  # the holder leaves between the two looks at the gate

        monkeypatch.setattr(storage.pool.threading, "Event", FreedMeanwhile)
        assert gate.enter(0.01)
        monkeypatch.undo()
        assert not gate._waiting and not gate.enter(0)

    def test_a_waiter_that_gives_up_leaves_the_line(self):
        gate = Gate(1)
        assert gate.enter(0)
        assert not gate.enter(0.05)
        assert not gate._waiting
        gate.leave()
        assert gate.enter(0)


def test_a_returned_connection_goes_to_the_waiter_not_a_newcomer(database_url):
    engine = storage.make_engine(migrated(database_url), pool_size=1, max_overflow=0, wait=10)
    assert isinstance(engine.pool, FairQueuePool)
    order = []

    def waiter():
        with engine.connect():
            order.append("waiter")

    holder = engine.connect()
    thread = threading.Thread(target=waiter)
    thread.start()
    for _ in range(1000):  # until it is in the line
        if engine.pool._gate._waiting:
            break
        threading.Event().wait(0.005)
    holder.close()
    with engine.connect():  # at once, before the waiter has run
        order.append("newcomer")
    thread.join(10)
    assert order == ["waiter", "newcomer"]
    engine.dispose()


def test_a_waiter_interrupted_in_line_gives_its_place_back():
    """A greenlet killed (or timed out) while waiting must not take a place with it."""
    script = """
from gevent import monkey; monkey.patch_all()
import sqlite3, gevent
from storage.pool import FairQueuePool

pool = FairQueuePool(lambda: sqlite3.connect(":memory:", check_same_thread=False),
                     pool_size=1, max_overflow=0, timeout=0.5)
held = pool.connect()
try:
    with gevent.Timeout(0.05):
        pool.connect()
except gevent.Timeout:
    pass
held.close()
pool.connect().close()
print("served")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.stdout.strip() == "served", result.stderr[-2000:]


def test_a_connection_collected_while_the_gate_is_busy_does_not_deadlock():
    """The garbage collector may check a forgotten connection in from inside the gate."""
    gate = Gate(1)
    done = threading.Event()

    def collect_inside():
        with gate._lock:  # as when a collection runs while enter() holds the lock
            gate.leave()
        done.set()

    threading.Thread(target=collect_inside, daemon=True).start()
    assert done.wait(5), "leave() deadlocked inside the gate's own lock"
    assert gate.enter(0)


def test_an_empty_change_still_checks_the_user_and_its_version(store):
    user = store.create(name="Ada", age=36)
    assert store.update(user.id, {}, versions={1}) == user
    with pytest.raises(VersionMismatch):
        store.update(user.id, {}, versions={7})
    with pytest.raises(UserNotFound):
        store.update(user.id + 1, {}, versions=None)


def test_why_the_database_cannot_serve_is_said_in_one_line(impatient_store):
    with impatient_store.engine.connect(), pytest.raises(storage.StoreUnavailable) as waited:
        impatient_store.get(1)
    assert str(waited.value) == "no database connection became free in time"
    user = impatient_store.create(name="Ada", age=36)
    other = storage.make_engine(impatient_store.engine.url.render_as_string(hide_password=False))
    with other.connect() as holder:
        holder.execute(sa.text("UPDATE users SET age = 40 WHERE id = :id"), {"id": user.id})
        with pytest.raises(storage.StoreUnavailable) as locked:
            impatient_store.update(user.id, {"age": 37}, versions=None)
        holder.rollback()
    other.dispose()
    expected = {
        "sqlite": {"OperationalError: database is locked"},
        # lock_timeout and statement_timeout are both the wait: either may fire first.
        "postgresql": {
            "LockNotAvailable: canceling statement due to lock timeout",
            "QueryCanceled: canceling statement due to statement timeout",
        },
    }[impatient_store.engine.dialect.name]
    assert str(locked.value) in expected


def test_errors_never_carry_the_parameters_sent(store):
    with pytest.raises(sa.exc.IntegrityError) as refused:
        store.create(name=None, age=31337)  # type: ignore[arg-type]
    message = str(refused.value)
    assert "[SQL parameters hidden due to hide_parameters=True]" in message
    assert "[parameters:" not in message


def test_a_connection_that_failed_at_start_up_is_not_now_and_other_errors_are_faults():
    refused = psycopg.OperationalError("connection failed: Connection refused")
    assert refused.sqlstate is None
    assert storage.users.unavailable(_dbapi_error(refused))
    assert not storage.users.unavailable(_dbapi_error(psycopg.DatabaseError("no state")))
    assert not storage.users.unavailable(_dbapi_error(ValueError("not a database error")))


@pytest.mark.parametrize(("wait", "busy_ms"), [(0.3, 300), (2.5, 2500), (0, 1)])
def test_sqlite_runs_in_wal_and_waits_for_a_writer_as_long_as_asked(tmp_path, wait, busy_ms):
    # The parent directories are made: a fresh data directory needs no set-up.
    engine = storage.make_engine(f"sqlite:///{tmp_path}/new/dir/users.sqlite3", wait=wait)
    with engine.connect() as conn:
        pragmas = [
            conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "busy_timeout", "synchronous")
        ]
    engine.dispose()
    assert pragmas == ["wal", busy_ms, 1]  # synchronous=NORMAL is 1


class TestFairQueuePool:
    def test_the_gate_is_as_wide_as_the_pool_and_its_overflow(self):
        pool = self.pool(pool_size=1, max_overflow=1, timeout=0.05)
        held = [pool.connect(), pool.connect()]
        with pytest.raises(
            sa.exc.TimeoutError, match=r"no connection of 1 \+ 1 came free within 0\.05 s"
        ) as refused:
            pool.connect()
        assert refused.value.code == "3o7r"  # QueuePool's own: SQLAlchemy's docs explain it
        for connection in held:
            connection.close()
        pool.connect().close()

    def test_an_unlimited_overflow_never_waits(self):
        pool = self.pool(pool_size=1, max_overflow=-1, timeout=0.05)
        held = [pool.connect() for _ in range(5)]  # a gate that waited would time out
        assert pool.checkedout() == 5
        for connection in held:
            connection.close()

    def test_a_failed_connect_gives_its_place_back(self):
        attempts = []

        def creator():
            attempts.append(1)
            if len(attempts) == 1:
                raise sqlite3.OperationalError("the server is starting up")
            return sqlite3.connect(":memory:", check_same_thread=False)

        pool = FairQueuePool(creator, pool_size=1, max_overflow=0, timeout=0.05)
        with pytest.raises(sqlite3.OperationalError):
            pool.connect()
        pool.connect().close()  # the only place is free again: no timeout

    def test_a_get_that_calls_itself_takes_one_place(self, monkeypatch):
        # QueuePool._do_get calls itself when another thread took the overflow it meant
        # to use; that inner call is inside the place the outer one holds.
        pool = self.pool(pool_size=2, max_overflow=0, timeout=0.05)
        inner = sa.pool.QueuePool._do_get
        calls = []

        def again(self):  # type: ignore[no-untyped-def]
            calls.append(1)
            return self._do_get() if len(calls) == 1 else inner(self)

        monkeypatch.setattr(sa.pool.QueuePool, "_do_get", again)
        first = pool.connect()
        assert len(calls) == 2
        second = pool.connect()  # the other place is still free: no timeout
        first.close()
        second.close()

    @staticmethod
    def pool(**kwargs):
        return FairQueuePool(lambda: sqlite3.connect(":memory:", check_same_thread=False), **kwargs)


def test_times_from_the_database_are_utc_and_keep_their_instant():
    from datetime import UTC, datetime, timedelta, timezone

    naive = datetime(2026, 1, 1, 12, 0)  # SQLite keeps no zone: it is UTC
    assert storage.users._utc(naive) == naive.replace(tzinfo=UTC)
    aware = datetime(2026, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))  # a server's zone
    assert storage.users._utc(aware) == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_timestamps_are_utc_whatever_the_servers_zone(store, monkeypatch):
    import time
    from datetime import UTC, datetime

    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9, no daylight saving
    time.tzset()
    try:
        before = datetime.now(UTC)
        user = store.create(name="Ada", age=36)
        after = datetime.now(UTC)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert before <= user.created_at <= after
    assert store.get(user.id).created_at == user.created_at


def test_a_transaction_past_its_deadline_is_unavailable_naming_the_deadline(
    sqlite_url, monkeypatch
):
    # Under gevent (the service's workers) each transaction is bounded by DB_TIMEOUT as a
    # whole; here a transaction that yields for longer than that stands for a stalled one.
    import gevent

    import storage.users

    monkeypatch.setattr(storage.users, "is_module_patched", lambda name: name == "socket")
    engine = storage.make_engine(migrated(sqlite_url), wait=0.2)
    sa.event.listen(engine, "begin", lambda conn: gevent.sleep(2))
    started = time.monotonic()
    with pytest.raises(storage.StoreUnavailable, match=r"^no answer from the database in 0.2 s$"):
        UserStore(engine).get(1)
    assert time.monotonic() - started < 1.5
    engine.dispose()
