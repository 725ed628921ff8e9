"""Every error as an RFC 9457 problem document, including the ones connexion raises.

These replace connexion's default error handlers so that all problems share one shape,
carry the request id, never leak internals, and run without a thread-pool hop.
"""

import json
from http import HTTPStatus
from typing import Any

import structlog
from connexion import FlaskApp
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException
from starlette.types import Send

from logging_ext import current_request_id
from storage import StoreUnavailable, UserNotFound, VersionMismatch

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger(__name__)


def problem_json(status: int, detail: str, title: str | None = None) -> bytes:
    body = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "request_id": current_request_id(),
    }
    return json.dumps(body, ensure_ascii=False).encode()


def problem(
    status: int, detail: str, *, title: str | None = None, headers: Any = None
) -> ConnexionResponse:
    return ConnexionResponse(
        status_code=status,
        mimetype=PROBLEM_JSON,
        content_type=PROBLEM_JSON,
        body=problem_json(status, detail, title),
        headers=headers,
    )


async def send_problem(send: Send, status: int, detail: str) -> None:
    """For ASGI middleware that answers before connexion's handlers run."""
    body = problem_json(status, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def contract_problem(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """Validation, security and media-type problems raised by connexion's middleware."""
    assert isinstance(exc, ProblemException)
    # jsonschema appends the failing schema and instance after a blank line; the first
    # paragraph says what is wrong, the rest is noise for a client.
    detail = str(exc.detail or exc.title or "").split("\n\n")[0]
    return problem(exc.status, detail, title=exc.title, headers=exc.headers)


async def http_error(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """Routing errors: unknown path (404), wrong method (405, with Allow)."""
    assert isinstance(exc, HTTPException)
    detail = "There is nothing at this path." if exc.status_code == 404 else str(exc.detail)
    return problem(exc.status_code, detail, headers=exc.headers)


async def server_error(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    log.error("unhandled exception", exc_info=exc)
    return problem(500, "The server failed to answer; the error is logged with this request id.")


async def undecodable(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    # Only reachable for bodies the body guard does not parse (non-JSON media types).
    return problem(400, "The request is not valid UTF-8.")


async def user_not_found(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    return problem(404, f"There is no user with id {exc.args[0]}.")


async def version_mismatch(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    return problem(
        412,
        f"User {exc.args[0]}'s current ETag is not one If-Match names (it changed since it"
        " was read), or is one If-None-Match names. Read it again before deciding.",
    )


async def store_unavailable(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    log.warning("database unavailable", reason=str(exc))
    return problem(
        503,
        "The database is busy or unreachable right now; please try again.",
        headers={"Retry-After": "1"},
    )


def init_app(app: FlaskApp) -> None:
    app.add_error_handler(ProblemException, contract_problem)
    app.add_error_handler(HTTPException, http_error)
    app.add_error_handler(Exception, server_error)
    app.add_error_handler(UnicodeDecodeError, undecodable)
    app.add_error_handler(UserNotFound, user_not_found)
    app.add_error_handler(VersionMismatch, version_mismatch)
    app.add_error_handler(StoreUnavailable, store_unavailable)
