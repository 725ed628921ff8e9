"""Queries on the users table. Knows nothing of HTTP: callers get User values or errors."""

import sqlite3
from collections.abc import Collection, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import psycopg
from gevent import Timeout
from gevent.monkey import is_module_patched
from sqlalchemy import (
    ColumnElement,
    Connection,
    Delete,
    Engine,
    Row,
    Update,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import delete as sql_delete
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from storage.tables import users


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    age: int
    version: int
    created_at: datetime
    updated_at: datetime


class UserNotFound(LookupError):
    """No user has this id (it never existed or was deleted)."""


class VersionMismatch(Exception):
    """The user exists but its version is not one the caller expected."""


class StoreUnavailable(Exception):
    """The database cannot serve this now (every connection busy, another writer's lock
    held too long, the server unreachable); the same call may succeed later."""


# None: change whatever version is current; a collection: only one of these versions.
Versions = Collection[int] | None


# Built once: SQLAlchemy then finds each one's compiled SQL by a key it memoises, instead
# of building and hashing a new statement per call.
_BY_ID = select(users).where(users.c.id == bindparam("user_id"))
_EXISTS = select(users.c.id).where(users.c.id == bindparam("user_id"))
_COUNT = select(func.count()).select_from(users)
# One more row than asked tells whether a next page exists (keyset pagination).
_PAGE = (
    select(users)
    .where(users.c.id > bindparam("after"))
    .order_by(users.c.id)
    .limit(bindparam("limit_plus_one"))
)
_INSERT = insert(users).returning(*users.c)


class UserStore:
    """Users in one database. Reads, too, run in begin() and so end in COMMIT, not the
    ROLLBACK of a plain connect(): psycopg drops its prepared statements on ROLLBACK,
    so repeated reads would never run prepared on PostgreSQL.

    Each call ends within the pool's timeout (DB_TIMEOUT), whatever the database does:
    a PostgreSQL server that stops answering (frozen, its host paused) still has its
    kernel acknowledge every packet, so neither TCP timeouts nor statement_timeout
    fire, and a request waited for as long as it stayed frozen. Under gevent a Timeout
    ends the call; SQLAlchemy takes it (a BaseException) as an exit and invalidates the
    connection it was using instead of returning it to the pool mid-query.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.deadline = float(engine.pool.timeout()) if hasattr(engine.pool, "timeout") else 0.0

    def count(self) -> int:
        with self._transaction() as conn:
            return conn.execute(_COUNT).scalar_one()

    def page(self, *, after: int, limit: int) -> tuple[list[User], int, bool]:
        """Up to `limit` users with id > after, oldest first; the total; whether more follow."""
        with self._transaction() as conn:
            rows = conn.execute(_PAGE, {"after": after, "limit_plus_one": limit + 1}).all()
            total = conn.execute(_COUNT).scalar_one()
        return [_user(row) for row in rows[:limit]], total, len(rows) > limit

    def get(self, user_id: int) -> User:
        with self._transaction() as conn:
            row = conn.execute(_BY_ID, {"user_id": user_id}).first()
        if row is None:
            raise UserNotFound(user_id)
        return _user(row)

    def create(self, *, name: str, age: int) -> User:
        now = _now()
        values = {"name": name, "age": age, "version": 1, "created_at": now, "updated_at": now}
        with self._transaction() as conn:
            row = conn.execute(_INSERT, values).one()
        return _user(row)

    def update(
        self,
        user_id: int,
        changes: Mapping[str, Any],
        *,
        versions: Versions,
        excluded: Collection[int] = (),
    ) -> User:
        """Apply changes atomically if the version is one of `versions` and none of
        `excluded`; bump version and updated_at."""
        if not changes:
            return self._checked(user_id, versions, excluded)
        stmt = _update(frozenset(changes), versions is not None, bool(excluded))
        values = {f"new_{name}": value for name, value in changes.items()}
        values |= _version_values(user_id, versions, excluded)
        with self._transaction() as conn:
            row = conn.execute(stmt, {**values, "now": _now()}).first()
            if row is None:
                raise self._missing_or_mismatch(conn, user_id)
        return _user(row)

    def delete(self, user_id: int, *, versions: Versions, excluded: Collection[int] = ()) -> None:
        stmt = _delete(versions is not None, bool(excluded))
        with self._transaction() as conn:
            if conn.execute(stmt, _version_values(user_id, versions, excluded)).rowcount == 0:
                raise self._missing_or_mismatch(conn, user_id)

    def _in_time(self) -> AbstractContextManager[object]:
        # Only gevent can interrupt a call that waits; without it (a plain process: tests,
        # migrations) the driver's own timeouts are all there is.
        if self.deadline and is_module_patched("socket"):
            timeout: AbstractContextManager[object] = Timeout(self.deadline)
            return timeout
        return nullcontext()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        deadline = self._in_time()
        try:
            with deadline, self.engine.begin() as conn:
                yield conn
        except Timeout as timeout:
            if timeout is not deadline:
                raise
            raise self._too_late() from None
        except PoolTimeout as exc:
            raise StoreUnavailable("no database connection became free in time") from exc
        except DBAPIError as exc:
            if _interrupted_by(exc, deadline):
                # The driver, cleaning up after the deadline, failed on the connection
                # left mid-query (the pool's ping restores autocommit in a `finally`).
                raise self._too_late() from None
            if not unavailable(exc):
                raise
            first_line = (str(exc.orig).strip().splitlines() or [""])[0]
            raise StoreUnavailable(f"{type(exc.orig).__name__}: {first_line}") from exc

    def _too_late(self) -> StoreUnavailable:
        return StoreUnavailable(f"no answer from the database in {self.deadline:g} s")

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query (in time)."""
        with self._transaction() as conn:
            conn.execute(select(1))

    def _checked(self, user_id: int, versions: Versions, excluded: Collection[int]) -> User:
        user = self.get(user_id)
        if (versions is not None and user.version not in versions) or user.version in excluded:
            raise VersionMismatch(user_id)
        return user

    @staticmethod
    def _missing_or_mismatch(conn: Connection, user_id: int) -> Exception:
        """Why a conditional write matched no row: no such user, or another version."""
        exists = conn.execute(_EXISTS, {"user_id": user_id}).first()
        return VersionMismatch(user_id) if exists else UserNotFound(user_id)


# PostgreSQL's SQLSTATEs that mean "not now": connection exceptions (08), insufficient
# resources such as too many clients (53), shutting down or starting up, lock_timeout,
# serialization failure and deadlock (both retryable), statement_timeout, and a
# read-only server during a failover.
_PG_TRANSIENT_CLASSES = ("08", "53")
_PG_TRANSIENT = frozenset({"57P01", "57P02", "57P03", "55P03", "40001", "40P01", "57014", "25006"})


def unavailable(error: DBAPIError) -> bool:
    """Whether a database error is the database saying "not now" (worth a retry later)
    rather than a fault in this service (a missing table, a bad query)."""
    if error.connection_invalidated:
        return True
    cause = error.orig
    if isinstance(cause, sqlite3.OperationalError):
        return str(cause).startswith(("database is locked", "database is busy"))
    if isinstance(cause, psycopg.Error):
        state = cause.sqlstate
        if state is None:
            # The connection itself failed (refused, timed out, rejected at start-up):
            # the service cannot reach its database. The log line says why.
            return isinstance(cause, psycopg.OperationalError)
        return state.startswith(_PG_TRANSIENT_CLASSES) or state in _PG_TRANSIENT
    return False


def _interrupted_by(error: BaseException, deadline: object) -> bool:
    """Whether `deadline` (a Timeout) is among the exceptions that led to `error`."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if cause is deadline:
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


# Conditional writes, one statement per shape (which fields, which version conditions),
# built once: building and hashing a new statement per call was half a PUT's work.
# Expanding parameters take each call's versions.
@lru_cache(maxsize=32)
def _update(fields: frozenset[str], versioned: bool, excluding: bool) -> Update:
    new_values: dict[str, Any] = {name: bindparam(f"new_{name}") for name in sorted(fields)}
    return (
        update(users)
        .where(users.c.id == bindparam("user_id"), *_version_is(versioned, excluding))
        .values(**new_values, version=users.c.version + 1, updated_at=bindparam("now"))
        .returning(*users.c)
    )


@lru_cache(maxsize=4)
def _delete(versioned: bool, excluding: bool) -> Delete:
    return sql_delete(users).where(
        users.c.id == bindparam("user_id"), *_version_is(versioned, excluding)
    )


def _version_is(versioned: bool, excluding: bool) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if versioned:
        conditions.append(users.c.version.in_(bindparam("versions", expanding=True)))
    if excluding:
        conditions.append(users.c.version.not_in(bindparam("excluded", expanding=True)))
    return conditions


def _version_values(user_id: int, versions: Versions, excluded: Collection[int]) -> dict[str, Any]:
    values: dict[str, Any] = {"user_id": user_id}
    if versions is not None:
        values["versions"] = list(versions)
    if excluded:
        values["excluded"] = list(excluded)
    return values


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(moment: datetime) -> datetime:
    # SQLite keeps no time zone; everything stored is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _user(row: Row[tuple[int, str, int, int, datetime, datetime]]) -> User:
    # Every query selects the table's columns in its order, which is User's field order
    # (tests/test_storage.py holds them together); unpacking is cheaper than names.
    id_, name, age, version, created_at, updated_at = row  # type: ignore[misc]
    return User(id_, name, age, version, _utc(created_at), _utc(updated_at))
