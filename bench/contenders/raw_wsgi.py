"""The ceiling: a bare WSGI callable doing the same database work and nothing else.

No routing library, no request object, no validation beyond what keeps it honest:
`gunicorn -k gevent bench.contenders.raw_wsgi:app`.
"""

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from bench.contenders import as_json, if_match, user_store
from storage import UserNotFound, VersionMismatch

store = user_store()
PREFIX = "/v1/users"
STATUS = {200: "200 OK", 201: "201 Created", 404: "404 Not Found", 412: "412 Precondition Failed"}


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    headers: list[tuple[str, str]] = []
    try:
        if path == PREFIX and method == "GET":
            status, body = 200, _page(parse_qs(environ.get("QUERY_STRING", "")))
        elif path == PREFIX and method == "POST":
            data = _json_body(environ)
            user = store.create(name=data["name"], age=data["age"])
            status, body = 201, as_json(user)
            headers.append(("Location", f"{PREFIX}/{user.id}"))
        elif path.startswith(PREFIX + "/") and method in ("GET", "PUT"):
            user_id = int(path[len(PREFIX) + 1 :])
            if method == "GET":
                user = store.get(user_id)
            else:
                data = _json_body(environ)
                versions = if_match(environ.get("HTTP_IF_MATCH"))
                changes = {"name": data["name"], "age": data["age"]}
                user = store.update(user_id, changes, versions=versions)
            status, body = 200, as_json(user)
            headers.append(("ETag", f'"{user.version}"'))
        else:
            status, body = 404, {}
    except UserNotFound:
        status, body = 404, {}
    except VersionMismatch:
        status, body = 412, {}
    payload = json.dumps(body).encode()
    headers += [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    start_response(STATUS[status], headers)
    return [payload]


def _page(query: dict[str, list[str]]) -> dict[str, Any]:
    limit = int(query.get("limit", ["20"])[0])
    users, total, more = store.page(after=int(query.get("after", ["0"])[0]), limit=limit)
    next_url = f"{PREFIX}?limit={limit}&after={users[-1].id}" if more else None
    return {"items": [as_json(u) for u in users], "count": total, "limit": limit, "next": next_url}


def _json_body(environ: dict[str, Any]) -> dict[str, Any]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    data: dict[str, Any] = json.loads(environ["wsgi.input"].read(length))
    return data
