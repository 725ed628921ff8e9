"""Observability as a Flask-style extension: request ids, JSON logs, access lines, metrics.

    JsonLogging(app)            # or: logging = JsonLogging(); logging.init_app(app)

`app` is the connexion FlaskApp: the request-id/access-log middleware must wrap the
whole ASGI stack, since connexion answers many requests before Flask sees them.
"""

import os
from typing import TYPE_CHECKING, Any

from logging_ext.context import choose_request_id, current_request_id
from logging_ext.setup import configure_logging

if TYPE_CHECKING:
    from connexion import FlaskApp

# Importing this package stays cheap and free of sockets: gunicorn.conf.py imports
# logging_ext.setup in the master, before workers fork and gevent patches them.

__all__ = ["JsonLogging", "choose_request_id", "configure_logging", "current_request_id"]


class JsonLogging:
    def __init__(self, app: "FlaskApp | None" = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: "FlaskApp") -> None:
        """Configure logging from app config (or the environment) and add the middleware.

        Call it before adding other middleware, so its access line sees their answers too.
        """
        from connexion.middleware import MiddlewarePosition

        from logging_ext.middleware import RequestLogMiddleware

        config = app.app.config
        configure_logging(
            level=_setting(config, "LOG_LEVEL") or "INFO",
            log_format=_setting(config, "LOG_FORMAT"),
        )
        proxies = _setting(config, "TRUSTED_PROXIES") or ""
        app.add_middleware(
            RequestLogMiddleware,
            position=MiddlewarePosition.BEFORE_EXCEPTION,
            trusted_proxies=proxies.split(","),
            # A callable(headers) -> bool deciding who may read /metrics; unset: anyone.
            metrics_guard=config.get("METRICS_GUARD"),
        )
        app.app.before_request(_expose_request_id)
        app.app.extensions["json_logging"] = self


def _setting(config: Any, name: str) -> str | None:
    value = config.get(name) or os.environ.get(name)
    return str(value) if value else None


def _expose_request_id() -> None:
    from flask import g

    g.request_id = current_request_id()
