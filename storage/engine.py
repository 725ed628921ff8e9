"""Engine creation: one place that knows the differences between SQLite and PostgreSQL."""

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from storage.pool import FairQueuePool


class DatabaseURLError(ValueError):
    """DATABASE_URL names no database this service can use."""


def normalise_url(url: str) -> str:
    """Accept the URLs operators usually have (postgres://, postgresql://) and pick psycopg 3."""
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    except ArgumentError as exc:
        raise DatabaseURLError(f"DATABASE_URL is not a database URL: {exc}") from None
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        if parsed.database in (None, "", ":memory:"):
            # Each worker (and the migration step) would get its own empty database.
            raise DatabaseURLError("DATABASE_URL names an in-memory SQLite database; use a file")
        return url  # as given: the driver is already the one to use
    raise DatabaseURLError(
        f"DATABASE_URL uses {parsed.drivername!r}; use sqlite:///path or postgresql://..."
    )


# What sits between the service and PostgreSQL: nothing (or a session pooler), or a
# transaction pooler such as PgBouncer's pool_mode=transaction.
POOLERS = ("none", "transaction")


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 5,
    wait: float = 5.0,
    pooler: str = "none",
) -> Engine:
    """An engine whose callers wait at most `wait` seconds for a pooled connection, for
    a lock another writer holds or for a statement; then the driver raises (see
    storage.users.unavailable). UserStore also bounds each whole transaction by `wait`.

    pooler="transaction": each transaction may run on another server connection, so
    nothing may live in the session: no prepared statements, and lock_timeout and
    statement_timeout are set in every transaction (SET LOCAL) instead of per connection."""
    if pooler not in POOLERS:
        raise ValueError(f"DB_POOLER must be one of {', '.join(POOLERS)}, got {pooler!r}")
    url = normalise_url(url)
    sqlite = url.startswith("sqlite")
    transaction_pooler = pooler == "transaction" and not sqlite
    engine = create_engine(
        url,
        hide_parameters=True,  # errors are logged: their messages must not carry user data
        pool_size=pool_size,
        max_overflow=max_overflow,
        poolclass=FairQueuePool,
        pool_timeout=wait,
        **({} if sqlite else _postgresql_options(wait, make_url(url).query, transaction_pooler)),
    )
    if sqlite:
        _prepare_sqlite(engine, wait)
    if transaction_pooler:
        _timeouts_per_transaction(engine, wait)
    return engine


def _postgresql_options(
    wait: float, in_url: Mapping[str, Any], transaction_pooler: bool
) -> dict[str, Any]:
    connect_args: dict[str, Any] = {
        # A server that does not answer fails the connection (libpq counts seconds).
        "connect_timeout": max(1, math.ceil(wait)),
    }
    if transaction_pooler:
        # psycopg prepares a query on its fifth run, on the server connection it had
        # then; the pooler may send the next run to another ("prepared statement
        # _pg3_0 does not exist"). Off: every query is sent with its text.
        connect_args["prepare_threshold"] = None
    else:
        # A row another transaction keeps locked fails the statement after `wait`,
        # instead of holding a request and a pooled connection for as long as it lasts;
        # so does a statement the server works on longer. (A transaction pooler refuses
        # `options` or drops it: see below.)
        connect_args["options"] = (
            f"-c lock_timeout={_milliseconds(wait)} -c statement_timeout={_milliseconds(wait)}"
        )
    # A server whose host vanished (no ACK, no RST): the kernel gives up on sent data
    # after `wait` and on an idle pooled connection after a few probes. A server that is
    # up but does not answer (frozen, overloaded) is UserStore's deadline's job.
    connect_args.update(
        tcp_user_timeout=_milliseconds(wait),
        keepalives=1,
        keepalives_idle=max(1, math.ceil(wait)),
        keepalives_interval=1,
        keepalives_count=3,
    )
    return {
        "pool_pre_ping": True,  # survive a database restart without a burst of 500s
        "pool_recycle": 1800,
        # What DATABASE_URL says itself (?options=..., ?connect_timeout=...) wins.
        "connect_args": {k: v for k, v in connect_args.items() if k not in in_url},
    }


def _timeouts_per_transaction(engine: Engine, wait: float) -> None:
    """lock_timeout and statement_timeout for each transaction, where a transaction
    pooler cannot lose them.

    Set with is_local (SET LOCAL): they last until COMMIT or ROLLBACK, so they never leak
    into another client's transaction on the same server connection. One more round trip
    per transaction.
    """
    ms = _milliseconds(wait)
    statement = (
        f"SELECT set_config('lock_timeout', '{ms}', true),"
        f" set_config('statement_timeout', '{ms}', true)"
    )

    @event.listens_for(engine, "begin")
    def _bounded(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql(statement)


def _milliseconds(seconds: float) -> int:
    # At least 1: 0 means "wait forever" to PostgreSQL and "not at all" to SQLite.
    return max(1, int(seconds * 1000))


def _prepare_sqlite(engine: Engine, wait: float) -> None:
    Path(str(engine.url.database)).parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine, "connect")
    def _tune(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the writer; busy_timeout makes a second worker's
        # writer wait for the lock instead of failing at once. SQLite waits inside C,
        # where gevent cannot switch: the worker's other requests wait too.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_milliseconds(wait)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
