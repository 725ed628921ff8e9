"""The users resource. Validation already happened against openapi.yaml."""

from collections.abc import Collection
from typing import Any

import structlog
from flask import Response as FlaskResponse
from flask import current_app, request

from etags import etag, if_match_holds, none_match, write_preconditions
from handlers import user_store
from storage import User, VersionMismatch

log = structlog.get_logger(__name__)

Response = tuple[Any, int, dict[str, str]]

# Each operation also declares problem+json responses, so connexion needs to be told
# which media type a successful answer has.
JSON = "application/json"


def user_page(limit: int = 20, after: int = 0) -> Response:
    users, total, more = user_store().page(after=after, limit=limit)
    next_url = f"/v1/users?limit={limit}&after={users[-1].id}" if more else None
    headers = {"Content-Type": JSON}
    if next_url:
        headers["Link"] = f'<{next_url}>; rel="next"'
    body = {
        "items": [as_json(user) for user in users],
        "count": total,
        "limit": limit,
        "next": next_url,
    }
    return body, 200, headers


def create_user(body: dict[str, Any]) -> Response:
    user = user_store().create(name=body["name"], age=body["age"])
    log.info("user created", user_id=user.id)
    headers = {"Content-Type": JSON, "Location": f"/v1/users/{user.id}", "ETag": etag(user)}
    return as_json(user), 201, headers


def get_user(user_id: int) -> Response | FlaskResponse:
    user = user_store().get(user_id)
    if not if_match_holds(request.headers.get("If-Match"), user):
        raise VersionMismatch(user_id)
    if none_match(request.headers.get("If-None-Match"), user):
        return _no_content(304, {"ETag": etag(user)})
    return as_json(user), 200, {"Content-Type": JSON, "ETag": etag(user)}


# HEAD answers as GET does; the server sends the headers without the body (RFC 9110, 9.3.2).
user_page_head = user_page
head_user = get_user


def replace_user(user_id: int, body: dict[str, Any]) -> Response:
    return _change(user_id, {"name": body["name"], "age": body["age"]})


def update_user(user_id: int, body: dict[str, Any]) -> Response:
    # A merge patch of a flat object: present fields replace, absent ones stay. The spec
    # rejects null, the only other case RFC 7396 has.
    return _change(user_id, body)


def delete_user(user_id: int) -> FlaskResponse:
    versions, excluded = _preconditions()
    user_store().delete(user_id, versions=versions, excluded=excluded)
    log.info("user deleted", user_id=user_id)
    return _no_content(204, {})


def _change(user_id: int, changes: dict[str, Any]) -> Response:
    versions, excluded = _preconditions()
    user = user_store().update(user_id, changes, versions=versions, excluded=excluded)
    log.info("user updated", user_id=user.id, fields=sorted(changes))
    return as_json(user), 200, {"Content-Type": JSON, "ETag": etag(user)}


def _preconditions() -> tuple[Collection[int] | None, Collection[int]]:
    return write_preconditions(
        request.headers.get("If-Match"),
        request.headers.get("If-None-Match"),
        require_if_match=current_app.config["REQUIRE_IF_MATCH"],
    )


def _no_content(status: int, headers: dict[str, str]) -> FlaskResponse:
    # A bodiless answer has no media type; returned as a Flask response so that
    # connexion does not pick one of the operation's media types for it.
    response = FlaskResponse(status=status, headers=headers)
    del response.headers["Content-Type"]
    return response


def as_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "age": user.age,
        "created_at": user.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": user.updated_at.isoformat().replace("+00:00", "Z"),
    }
