"""Wiring: create_app(settings) builds the connexion app from the contract and its parts."""

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from connexion import FlaskApp
from connexion.jsonifier import Jsonifier
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions

import storage
from handlers import problems, root
from logging_ext import JsonLogging
from middleware.allow import AllowMiddleware
from middleware.body_guard import BodyGuardMiddleware
from serving.bridge import call_flask_inline
from settings import Settings

ROOT = Path(__file__).parent
SPEC = ROOT / "openapi.yaml"


def create_app(settings: Settings | None = None) -> FlaskApp:
    settings = settings or Settings.from_env()
    engine = storage.make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    storage.check_current(engine)

    app = FlaskApp(
        __name__,
        specification_dir=ROOT,
        # The tutorial's JSON_AS_ASCII=False: names come back as UTF-8, not \u escapes.
        jsonifier=Jsonifier(json, ensure_ascii=False, separators=(",", ":")),
    )
    spec = load_spec()
    app.add_api(
        spec,
        strict_validation=True,
        validate_responses=settings.validate_responses,
        swagger_ui_options=SwaggerUIOptions(spec_path="/v1/openapi.json", swagger_ui_path="/v1/ui"),
    )
    app.app.config.update(
        SETTINGS=settings,
        LOG_LEVEL=settings.log_level,
        LOG_FORMAT=settings.log_format,
        TRUSTED_PROXIES=",".join(settings.trusted_proxies),
    )
    # First: its access line and request id must cover what the middleware below answers.
    JsonLogging(app)
    app.add_middleware(
        BodyGuardMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        max_bytes=settings.max_body_bytes,
    )
    app.add_middleware(AllowMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION, spec=spec)
    call_flask_inline(app)
    app.app.extensions["user_store"] = storage.UserStore(engine)
    app.app.extensions["api_links"] = root.links_from_spec(spec)
    problems.init_app(app)
    return app


@cache
def load_spec() -> dict[str, Any]:
    """The contract, parsed once per process (connexion copies what it changes)."""
    spec: dict[str, Any] = yaml.load(SPEC.read_bytes(), Loader=yaml.CSafeLoader)
    return spec


def __getattr__(name: str) -> Any:
    # `app` (ASGI) and `wsgi` (for gunicorn's gevent worker) are built on first use, not
    # at import, so tests and tools can import create_app without touching a database.
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    if name == "wsgi":
        from serving.bridge import to_wsgi

        globals()["wsgi"] = to_wsgi(__getattr__("app"))
        return globals()["wsgi"]
    raise AttributeError(name)
