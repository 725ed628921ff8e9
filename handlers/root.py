"""The API root: what this is, how many users it holds, and where every operation lives."""

from typing import Any

from flask import current_app

from handlers import user_store

HTTP_METHODS = ("get", "put", "post", "patch", "delete")


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
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]
