"""Observability as a Flask-style extension: request ids, JSON logs, access lines, metrics.

    JsonLogging(app, level="INFO")      # or: logging = JsonLogging(); logging.init_app(app)

`app` is the connexion FlaskApp: the request-id/access-log middleware must wrap the
whole ASGI stack, since connexion answers many requests before Flask sees them.
"""

from collections.abc import Iterable
from typing import TYPE_CHECKING

from logging_ext.client import ClientAddress
from logging_ext.context import choose_request_id, current_request_id
from logging_ext.setup import configure_logging

if TYPE_CHECKING:
    from connexion import FlaskApp

# Importing this package stays cheap and free of sockets: gunicorn.conf.py imports
# logging_ext.setup in the master, before workers fork and gevent patches them.

__all__ = [
    "ClientAddress",
    "JsonLogging",
    "choose_request_id",
    "configure_logging",
    "current_request_id",
]


class JsonLogging:
    def __init__(
        self,
        app: "FlaskApp | None" = None,
        *,
        level: str = "INFO",
        log_format: str | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        """`log_format`: json or console (None: JSON unless stdout is a terminal);
        `trusted_proxies`: addresses or networks whose X-Forwarded-For is believed."""
        self.level = level
        self.log_format = log_format
        self.trusted_proxies = tuple(trusted_proxies)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: "FlaskApp") -> None:
        """Configure logging and add the middleware.

        Call it before adding other middleware, so its access line sees their answers too.
        """
        from connexion.middleware import MiddlewarePosition

        from logging_ext.middleware import RequestLogMiddleware
        from logging_ext.request_globals import RequestGlobals

        configure_logging(level=self.level, log_format=self.log_format)
        app.add_middleware(
            RequestLogMiddleware,
            position=MiddlewarePosition.BEFORE_EXCEPTION,
            trusted_proxies=self.trusted_proxies,
        )
        app.app.app_ctx_globals_class = RequestGlobals  # g.request_id
        app.app.extensions["json_logging"] = self
