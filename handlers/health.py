"""Probes for orchestrators: liveness is cheap, readiness asks the database."""

import structlog
from sqlalchemy.exc import SQLAlchemyError

from handlers import user_store
from handlers.problems import problem

log = structlog.get_logger(__name__)


def alive() -> tuple[dict[str, str], int, dict[str, str]]:
    return {"status": "ok"}, 200, {"Content-Type": "application/json"}


def ready():  # type: ignore[no-untyped-def]
    try:
        user_store().ping()
    except SQLAlchemyError as exc:
        log.warning("database not ready", error=type(exc).__name__)
        return problem(503, "The database is not reachable.")
    return {"status": "ok"}, 200, {"Content-Type": "application/json"}
