"""The operations of users-api's openapi.yaml as plain functions, for connexion 2 and 3.

Both connexion contenders load the same contract and resolve every operationId to a
function here (`resolve`), and its x-apikeyInfoFunc to `api_key_info`: the API-key
check, parameter and body validation are connexion's own. The functions run inside
Flask's request context under both versions, so one module serves both. `init_flask`
adds a request id and one JSON access line per request as Flask hooks, the way an app
on either version would.
"""

import time
from collections.abc import Callable
from typing import Any

import structlog
from connexion.exceptions import OAuthScopeProblem, ProblemException
from flask import Flask, Response, g, request

from bench.contenders import as_json, etag, features, if_match, if_match_holds, none_match
from bench.contenders import user_store as _user_store
from storage import StoreUnavailable, UserNotFound, VersionMismatch

store = _user_store()
keys = features.load_keys()
features.configure_logging()

Answer = tuple[Any, int, dict[str, str]]


def resolve(operation_id: str) -> Callable[..., Any]:
    """`handlers.users.get_user` (the spec's controller and operationId) -> get_user here."""
    function: Callable[..., Any] = globals()[operation_id.rsplit(".", 1)[-1]]
    return function


def patch_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The contract as it is, with its security function pointed here."""
    scheme = spec["components"]["securitySchemes"]["ApiKeyAuth"]
    scheme["x-apikeyInfoFunc"] = f"{__name__}.api_key_info"
    return spec


def api_key_info(key: str, required_scopes: list[str] | None = None) -> dict[str, Any] | None:
    found = features.find_key(keys, key)
    if found is None:
        return None  # connexion answers 401
    granted = features.GRANTS[found.role]
    structlog.contextvars.bind_contextvars(api_key=found.name)
    if not set(required_scopes or ()) <= granted:
        raise OAuthScopeProblem(token_scopes=sorted(granted), required_scopes=required_scopes)
    return {"sub": found.name, "scope": sorted(granted)}


def _may_write(token_info: dict[str, Any]) -> None:
    """connexion 2 passes no scopes to an apiKey scheme's function, so the write role is
    checked here (connexion 3 has already checked it: then this finds it granted)."""
    if "write" not in token_info["scope"]:
        raise OAuthScopeProblem(token_scopes=token_info["scope"], required_scopes=["write"])


# --- the operations -------------------------------------------------------------------


def user_page(limit: int = 20, after: int = 0) -> Answer:
    users, total, more = _call(store.page, after=after, limit=limit)
    next_url = f"/v1/users?limit={limit}&after={users[-1].id}" if more else None
    headers = {"Content-Type": "application/json"}
    if next_url:
        headers["Link"] = f'<{next_url}>; rel="next"'
    items = [as_json(user) for user in users]
    return {"items": items, "count": total, "limit": limit, "next": next_url}, 200, headers


def create_user(body: dict[str, Any], token_info: dict[str, Any]) -> Answer:
    _may_write(token_info)
    user = _call(store.create, name=body["name"], age=body["age"])
    headers = {"Location": f"/v1/users/{user.id}", "ETag": etag(user)}
    return as_json(user), 201, {"Content-Type": "application/json", **headers}


def get_user(user_id: int) -> Answer | Response:
    user = _call(store.get, user_id)
    if not if_match_holds(request.headers.get("If-Match"), user):
        raise _problem(412, f"User {user_id} has changed.")
    if none_match(request.headers.get("If-None-Match"), user):
        return Response(status=304, headers={"ETag": etag(user)})
    return as_json(user), 200, {"Content-Type": "application/json", "ETag": etag(user)}


def replace_user(user_id: int, body: dict[str, Any], token_info: dict[str, Any]) -> Answer:
    _may_write(token_info)
    return _change(user_id, {"name": body["name"], "age": body["age"]})


def update_user(user_id: int, body: dict[str, Any], token_info: dict[str, Any]) -> Answer:
    _may_write(token_info)
    return _change(user_id, body)


def delete_user(user_id: int, token_info: dict[str, Any]) -> Response:
    _may_write(token_info)
    _call(store.delete, user_id, versions=if_match(request.headers.get("If-Match")))
    return Response(status=204)


def api_index() -> Answer:
    return {"description": "users-api", "user_count": store.count(), "links": []}, 200, {}


def alive() -> Answer:
    return {"status": "ok"}, 200, {}


def ready() -> Answer:
    _call(store.ping)
    return {"status": "ok"}, 200, {}


# HEAD answers as GET does (the spec has a HEAD operation wherever it has a GET).
api_index_head, alive_head, ready_head = api_index, alive, ready
user_page_head, head_user = user_page, get_user


def _change(user_id: int, changes: dict[str, Any]) -> Answer:
    versions = if_match(request.headers.get("If-Match"))
    user = _call(store.update, user_id, changes, versions=versions)
    return as_json(user), 200, {"Content-Type": "application/json", "ETag": etag(user)}


def _call(operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The store's errors as connexion's problem documents."""
    try:
        return operation(*args, **kwargs)
    except UserNotFound as missing:
        raise _problem(404, f"There is no user with id {missing.args[0]}.") from None
    except VersionMismatch as changed:
        raise _problem(412, f"User {changed.args[0]} has changed.") from None
    except StoreUnavailable:
        retry = {"Retry-After": "1"}
        raise ProblemException(status=503, detail="Try again.", headers=retry) from None


def _problem(status: int, detail: str) -> ProblemException:
    titles = {404: "Not Found", 412: "Precondition Failed"}
    return ProblemException(status=status, title=titles[status], detail=detail)


# --- request id and access line -------------------------------------------------------


def init_flask(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)


def _start() -> None:
    g.started = time.perf_counter()
    g.request_id = features.request_id(request.headers.get("X-Request-ID"))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=g.request_id)


def _finish(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.request_id
    features.log_access(
        method=request.method,
        path=request.path,
        status=response.status_code,
        duration_ms=round((time.perf_counter() - g.started) * 1000, 3),
        response_bytes=response.calculate_content_length(),
        client=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
    )
    return response
