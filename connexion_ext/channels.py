"""ASGI receive channels: a body already read, handed on to the next app.

Middleware that must see a request's body before the app does (the size limit, strict
JSON, the body validator) reads it with starlette's `Request(scope, receive)`, then
passes `replay(body, receive)` on, so the next reader gets the same bytes.
"""

from starlette.types import Message, Receive


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands over `body` once, whole, then defers to the real one (for
    the client's disconnect)."""
    replayed = False

    async def receive_again() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive_again
