"""Every error as an RFC 9457 problem document: one body, in the two shapes callers need.

- `problem(...)`: a ConnexionResponse, for connexion's error handlers and Flask views.
- `ProblemResponse(...)`: a starlette Response, for ASGI middleware that answers before
  connexion's handlers run (`await ProblemResponse(...)(scope, receive, send)`).

`init_app` replaces connexion's default error handlers, so all problems share one shape,
carry the request id and never leak internals; `ProblemBoundary` is the last line: an
exception raised outside connexion's handlers (in our middleware) is a 500 document too.
"""

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from connexion import FlaskApp
from connexion.exceptions import ProblemException, UnsupportedMediaTypeProblem
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connexion_ext import operation_id
from connexion_ext.messages import echo
from contract import operations
from etags import IfMatchRequired
from logging_ext import current_request_id
from storage import StoreUnavailable, UserNotFound, VersionMismatch

PROBLEM_JSON = "application/problem+json"
SERVER_FAILED = "The server failed to answer; the error is logged with this request id."
# A database that said "not now" may well say yes a second later.
RETRY_AFTER = {"Retry-After": "1"}
log = structlog.get_logger(__name__)


def problem_body(
    status: int,
    detail: str,
    title: str | None = None,
    errors: Sequence[Mapping[str, str]] | None = None,
    request_id: str | None = None,
) -> bytes:
    """The document; `errors` (openapi.yaml, ProblemError) lists what a 400 found, each
    with its place: a JSON pointer into the body, or a parameter's name and `in`.
    `request_id`: the current request's unless given."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = list(errors)
    body["request_id"] = request_id or current_request_id()
    return json.dumps(body, ensure_ascii=False).encode()


def problem(
    status: int,
    detail: str,
    *,
    headers: Any = None,
    errors: Sequence[Mapping[str, str]] | None = None,
) -> ConnexionResponse:
    """The title is the status's phrase, as RFC 9457 asks of about:blank problems (every
    title connexion gives its problems is that phrase too)."""
    return ConnexionResponse(
        status_code=status,
        content_type=PROBLEM_JSON,
        body=problem_body(status, detail, errors=errors),
        headers=headers,
    )


class ProblemResponse(Response):
    media_type = PROBLEM_JSON

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(problem_body(status, detail), status_code=status, headers=headers)


class ProblemBoundary:
    """Outside connexion's exception handling: whatever our middleware raises is a 500
    problem document (never a traceback), unless the answer had already begun."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            log.exception("unhandled exception outside the handlers")
            if started or scope["type"] != "http":
                raise
            await ProblemResponse(500, SERVER_FAILED)(scope, receive, send)


async def contract_problem(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """Validation, security and media-type problems raised by connexion's middleware.

    A 5xx among them is an answer that breaks the contract (response validation): the
    fault is ours, so it is logged and the client gets the plain 500. connexion's detail
    quotes the value that broke the schema (users' data): the log keeps only where."""
    assert isinstance(exc, ProblemException)
    detail = str(exc.detail or exc.title)
    if exc.status >= 500:
        _, path_follows, path = detail.rpartition(" - '")
        log.error("answer breaks the contract", at=path.rstrip("'") if path_follows else "")
        return problem(500, SERVER_FAILED)
    errors = (exc.ext or {}).get("errors")
    return problem(exc.status, detail, headers=exc.headers, errors=errors)


async def http_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """Routing errors: unknown path (404), wrong method (405, with Allow)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        detail = "There is nothing at this path; the API's paths are listed at /v1."
    elif exc.status_code == 405:
        detail = (
            f"This path does not answer {request.method[:20]}; the Allow header lists the"
            " methods it does."
        )
    else:
        detail = str(exc.detail)
    return problem(exc.status_code, detail, headers=exc.headers)


async def server_error(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    log.error("unhandled exception", exc_info=exc)
    return problem(500, SERVER_FAILED)


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


async def if_match_required(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    return problem(
        428,
        "This service requires If-Match on every change (REQUIRE_IF_MATCH): read the user,"
        " then send its ETag in If-Match, so a change made since you read it is not lost.",
    )


async def store_unavailable(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    log.warning("database unavailable", reason=str(exc))
    return problem(
        503,
        "The database is busy or unreachable right now; please try again.",
        headers=RETRY_AFTER,
    )


class UnsupportedMedia:
    """A 415 that names the media types the operation takes (connexion's reads "expected
    ['application/json']"), with Accept-Patch on a PATCH (RFC 5789, 2.2).

    `answer` is the handler: connexion awaits a coroutine function in place but sends
    any other callable (an object with an async __call__ too) to a thread pool, which
    needs the event loop connexion_ext's bridge does not run."""

    def __init__(self, spec: dict[str, Any]) -> None:
        # operationId -> the media types its body may be in, as the contract lists them
        self.media_types = {
            operation["operationId"]: list(operation.get("requestBody", {}).get("content", {}))
            for _path, _method, operation in operations(spec)
        }

    async def answer(self, request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        accepted = self.media_types.get(operation_id(request.scope) or "")
        content_type = request.headers.get("content-type")
        if not accepted or content_type is None:
            return await contract_problem(request, exc)
        media = content_type.split(";", 1)[0].strip()
        headers = {"Accept-Patch": ", ".join(accepted)} if request.method == "PATCH" else None
        detail = f"This operation takes a body in {' or '.join(accepted)}, not {echo(media)}."
        return problem(415, detail, headers=headers)


def init_app(app: FlaskApp, spec: dict[str, Any]) -> None:
    app.add_error_handler(ProblemException, contract_problem)
    app.add_error_handler(UnsupportedMediaTypeProblem, UnsupportedMedia(spec).answer)
    app.add_error_handler(HTTPException, http_error)
    app.add_error_handler(Exception, server_error)
    app.add_error_handler(UnicodeDecodeError, undecodable)
    app.add_error_handler(UserNotFound, user_not_found)
    app.add_error_handler(VersionMismatch, version_mismatch)
    app.add_error_handler(IfMatchRequired, if_match_required)
    app.add_error_handler(StoreUnavailable, store_unavailable)
