"""Keeping users: engine, tables, queries and migrations. Never sees HTTP."""

from storage.engine import DatabaseURLError, make_engine
from storage.migrate import MIGRATION_LOCK, SchemaOutOfDate, check_current, migrate, upgrade
from storage.users import StoreUnavailable, User, UserNotFound, UserStore, VersionMismatch

__all__ = [
    "MIGRATION_LOCK",
    "DatabaseURLError",
    "SchemaOutOfDate",
    "StoreUnavailable",
    "User",
    "UserNotFound",
    "UserStore",
    "VersionMismatch",
    "check_current",
    "make_engine",
    "migrate",
    "upgrade",
]
