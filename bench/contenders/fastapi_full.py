"""FastAPI with users-api's features, the way FastAPI's documentation adds each one.

An API-key dependency with roles (`features`: SHA-256 digests, constant-time compare),
pydantic validation of bodies and parameters with openapi.yaml's bounds (strict types,
no unknown fields), a request id (X-Request-ID) and one JSON access line per request
through structlog in an `http` middleware, ETag with If-Match (412) and If-None-Match
(304), and every error as application/problem+json. Plain `def` endpoints (FastAPI runs
them in its thread pool), under uvicorn: `uvicorn bench.contenders.fastapi_full:app`.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from bench.contenders import as_json, etag, features, if_match, if_match_holds, none_match
from bench.contenders import user_store as _user_store
from storage import StoreUnavailable, UserNotFound, VersionMismatch

MAX_ID = 2**63 - 1

store = _user_store()
keys = features.load_keys()
features.configure_logging()
app = FastAPI()
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


class UserInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1, max_length=100, pattern="^[^\x00]*$")
    age: StrictInt = Field(ge=0, lt=140)


def role(needed: str) -> Callable[[str | None], str]:
    def check(key: Annotated[str | None, Depends(api_key_header)]) -> str:
        found = features.find_key(keys, key) if key else None
        if found is None:
            raise HTTPException(401, "No API key, or one this service does not know.")
        structlog.contextvars.bind_contextvars(api_key=found.name)
        if needed not in features.GRANTS[found.role]:
            raise HTTPException(403, f"Key {found.name!r} has role {found.role!r}.")
        return found.name

    return check


Reader = Depends(role("read"))
Writer = Depends(role("write"))
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]


@app.middleware("http")
async def request_id_and_access_line(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    started = time.perf_counter()
    rid = features.request_id(request.headers.get("x-request-id"))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=rid)
    request.state.request_id = rid
    response = await call_next(request)
    response.headers["X-Request-ID"] = rid
    features.log_access(
        method=request.method,
        path=request.url.path,
        status=response.status_code,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        response_bytes=response.headers.get("content-length"),
        client=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )
    return response


def _problem(request: Request, status: int, detail: str, headers: Any = None) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "request_id": getattr(request.state, "request_id", None),
    }
    return JSONResponse(body, status, headers, media_type="application/problem+json")


_TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 412: "Precondition Failed", 503: "Service Unavailable",
}  # fmt: skip


@app.exception_handler(HTTPException)
async def http_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return _problem(request, exc.status_code, str(exc.detail), exc.headers)


@app.exception_handler(RequestValidationError)
async def invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    error = exc.errors()[0]
    return _problem(request, 400, f"{'.'.join(map(str, error['loc']))}: {error['msg']}")


@app.exception_handler(UserNotFound)
async def not_found(request: Request, exc: Exception) -> JSONResponse:
    return _problem(request, 404, f"There is no user with id {exc.args[0]}.")


@app.exception_handler(VersionMismatch)
async def changed(request: Request, exc: Exception) -> JSONResponse:
    return _problem(request, 412, f"User {exc.args[0]} has changed.")


@app.exception_handler(StoreUnavailable)
async def unavailable(request: Request, exc: Exception) -> JSONResponse:
    return _problem(request, 503, "Try again.", {"Retry-After": "1"})


@app.get("/v1/users", dependencies=[Reader])
def user_page(
    response: Response,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> dict[str, Any]:
    users, total, more = store.page(after=after, limit=limit)
    next_url = f"/v1/users?limit={limit}&after={users[-1].id}" if more else None
    if next_url:
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return {"items": [as_json(u) for u in users], "count": total, "limit": limit, "next": next_url}


@app.post("/v1/users", status_code=201, dependencies=[Writer])
def create_user(body: UserInput, response: Response) -> dict[str, Any]:
    user = store.create(name=body.name, age=body.age)
    response.headers["Location"] = f"/v1/users/{user.id}"
    response.headers["ETag"] = etag(user)
    return as_json(user)


@app.get("/v1/users/{user_id}", dependencies=[Reader], response_model=None)
def get_user(
    user_id: UserId,
    response: Response,
    if_match_header: Annotated[str | None, Header(alias="If-Match")] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> dict[str, Any] | Response:
    user = store.get(user_id)
    if not if_match_holds(if_match_header, user):
        raise VersionMismatch(user_id)
    if none_match(if_none_match, user):
        return Response(status_code=304, headers={"ETag": etag(user)})
    response.headers["ETag"] = etag(user)
    return as_json(user)


@app.put("/v1/users/{user_id}", dependencies=[Writer])
def replace_user(
    user_id: UserId,
    body: UserInput,
    response: Response,
    if_match_header: Annotated[str | None, Header(alias="If-Match")] = None,
) -> dict[str, Any]:
    changes = {"name": body.name, "age": body.age}
    user = store.update(user_id, changes, versions=if_match(if_match_header))
    response.headers["ETag"] = etag(user)
    return as_json(user)
