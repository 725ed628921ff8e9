"""The id of the request in flight, readable anywhere without passing it around."""

import re
import uuid
from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# An incoming X-Request-ID is kept only if it is this tame: it ends up in logs and headers.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def current_request_id() -> str | None:
    return _request_id.get()


def choose_request_id(incoming: str | None) -> str:
    """The caller's id if acceptable (so traces join up across services), else a new uuid4."""
    if incoming is not None and _ACCEPTABLE.fullmatch(incoming):
        return incoming
    return str(uuid.uuid4())
