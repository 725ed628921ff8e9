"""Entity tags and the conditional headers of RFC 9110, section 13."""

import re
from collections.abc import Collection

from storage import User

# One entity-tag in a list: optional weakness prefix and a quoted opaque value.
_ENTITY_TAG = re.compile(r'(W/)?"([^"]*)"')


def etag(user: User) -> str:
    return f'"{user.version}"'


def if_match_versions(header: str | None) -> Collection[int] | None:
    """Versions If-Match allows; None when any version will do (no header, or `*`).

    If-Match uses the strong comparison, so weak tags match nothing.
    """
    if header is None or header.strip() == "*":
        return None
    return {
        int(value) for weak, value in _ENTITY_TAG.findall(header) if not weak and value.isdigit()
    }


def none_match(header: str | None, user: User) -> bool:
    """True when If-None-Match names the user's current version (weak comparison)."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    current = str(user.version)
    return any(value == current for _weak, value in _ENTITY_TAG.findall(header))
