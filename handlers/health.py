"""Probes for orchestrators: liveness is cheap, readiness asks the database."""

import structlog
from sqlalchemy.exc import SQLAlchemyError

from handlers import user_store
from lifecycle import draining
from problems import RETRY_AFTER, problem
from storage import StoreUnavailable

log = structlog.get_logger(__name__)


def alive() -> tuple[dict[str, str], int, dict[str, str]]:
    return {"status": "ok"}, 200, {"Content-Type": "application/json"}


def ready():  # type: ignore[no-untyped-def]
    if draining():
        return problem(
            503, "This instance is stopping; send requests elsewhere.", headers=RETRY_AFTER
        )
    try:
        user_store().ping()
    except (StoreUnavailable, SQLAlchemyError) as exc:
        log.warning("database not ready", error=type(exc).__name__)
        return problem(503, "The database is not reachable.", headers=RETRY_AFTER)
    return {"status": "ok"}, 200, {"Content-Type": "application/json"}


# HEAD answers as GET does; the server sends the headers without the body (RFC 9110, 9.3.2).
alive_head = alive
ready_head = ready
