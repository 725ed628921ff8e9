"""Probes for orchestrators: liveness is cheap, readiness asks the database."""

import structlog
from sqlalchemy.exc import SQLAlchemyError

from handlers import user_store
from lifecycle import draining
from problems import problem
from storage import StoreUnavailable

log = structlog.get_logger(__name__)
# Like the API's 503s: worth asking again (a draining instance's balancer asks another).
RETRY = {"Retry-After": "1"}


def alive() -> tuple[dict[str, str], int, dict[str, str]]:
    return {"status": "ok"}, 200, {"Content-Type": "application/json"}


def ready():  # type: ignore[no-untyped-def]
    if draining():
        return problem(503, "This instance is stopping; send requests elsewhere.", headers=RETRY)
    try:
        user_store().ping()
    except (StoreUnavailable, SQLAlchemyError) as exc:
        log.warning("database not ready", error=type(exc).__name__)
        return problem(503, "The database is not reachable.", headers=RETRY)
    return {"status": "ok"}, 200, {"Content-Type": "application/json"}


# HEAD answers as GET does; the server sends the headers without the body (RFC 9110, 9.3.2).
alive_head = alive
ready_head = ready
