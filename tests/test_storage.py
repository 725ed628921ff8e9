"""UserStore on each real database: SQLite and PostgreSQL run the same tests."""

import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

import storage
from storage import UserNotFound, UserStore, VersionMismatch
from storage.pool import FairQueuePool, Gate
from tests.conftest import migrated

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(database_url):
    engine = storage.make_engine(migrated(database_url), pool_size=20)
    yield UserStore(engine)
    engine.dispose()


def test_create_then_get_round_trips_every_field(store):
    created = store.create(name="Ada", age=36)
    assert store.get(created.id) == created
    assert created.version == 1
    assert created.created_at.tzinfo is not None
    assert created.created_at == created.updated_at


def test_get_unknown_id_raises(store):
    with pytest.raises(UserNotFound):
        store.get(2**62)


def test_update_changes_given_fields_and_bumps_version(store):
    user = store.create(name="Ada", age=36)
    updated = store.update(user.id, {"age": 37}, versions=None)
    assert (updated.name, updated.age, updated.version) == ("Ada", 37, 2)
    assert updated.created_at == user.created_at
    assert updated.updated_at > user.updated_at


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
    storage.upgrade(engine)
    storage.check_current(engine)
    engine.dispose()


def test_an_unmigrated_database_is_refused(database_url):
    engine = storage.make_engine(database_url)
    with pytest.raises(storage.SchemaOutOfDate, match="make migrate"):
        storage.check_current(engine)
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql://u:p@h:5/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_database_urls_are_normalised(url, driver):
    assert sa.engine.make_url(storage.engine.normalise_url(url)).drivername == driver


@pytest.mark.parametrize(
    "url", ["mysql://h/db", "not a url", "", "sqlite://", "sqlite:///:memory:"]
)
def test_unusable_database_urls_are_refused(url):
    with pytest.raises(storage.DatabaseURLError):
        storage.engine.normalise_url(url)


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

    assert storage.users.unavailable(_dbapi_error(sqlite3.OperationalError("database is locked")))
    assert not storage.users.unavailable(_dbapi_error(sqlite3.OperationalError("no such table")))


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
