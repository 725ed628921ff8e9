"""Keeping users: engine, tables, queries and migrations. Never sees HTTP."""

from storage.engine import DEFAULT_DATABASE_URL, DatabaseURLError, make_engine
from storage.migrate import SchemaOutOfDate, check_current, upgrade
from storage.users import StoreUnavailable, User, UserNotFound, UserStore, VersionMismatch

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DatabaseURLError",
    "SchemaOutOfDate",
    "StoreUnavailable",
    "User",
    "UserNotFound",
    "UserStore",
    "VersionMismatch",
    "check_current",
    "make_engine",
    "upgrade",
]
