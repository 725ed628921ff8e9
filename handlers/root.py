"""The API root: what this is, how many users it holds, and where every operation lives."""

from typing import Any

from flask import current_app

from contract import operations
from handlers import user_store


def api_index() -> tuple[dict[str, Any], int, dict[str, str]]:
    body = {
        "description": "users-api: a directory of users",
        "user_count": user_store().count(),
        "links": current_app.extensions["api_links"],
    }
    return body, 200, {"Content-Type": "application/json"}


def links_from_spec(spec: dict[str, Any]) -> list[dict[str, str]]:
    """One link per operation, read from the contract so the root never drifts from it."""
    return [
        {"method": method.upper(), "href": path, "description": operation["summary"]}
        for path, method, operation in operations(spec)
    ]


# HEAD answers as GET does; the server sends the headers without the body (RFC 9110, 9.3.2).
api_index_head = api_index
