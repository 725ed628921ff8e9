"""Wiring: create_app(settings) builds the connexion app from the contract and its parts."""

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from connexion import FlaskApp
from connexion.jsonifier import Jsonifier
from connexion.middleware import ConnexionMiddleware, MiddlewarePosition
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.options import SwaggerUIOptions

import storage
from handlers import auth, problems, root
from logging_ext import JsonLogging
from middleware.body_guard import BodyLimitMiddleware, StrictJsonMiddleware
from middleware.cors import ProblemCORSMiddleware
from middleware.headers import ResponseHeadersMiddleware
from middleware.swagger_ui import SwaggerUIOnItsPaths
from middleware.validators import VALIDATORS
from serving.bridge import call_flask_inline
from settings import Settings, SettingsError

ROOT = Path(__file__).parent
SPEC = ROOT / "openapi.yaml"
OUTSIDE_HANDLERS = MiddlewarePosition.BEFORE_EXCEPTION
# connexion's own stack, with a Swagger UI middleware that API requests skip.
CONNEXION_MIDDLEWARES = [
    SwaggerUIOnItsPaths if middleware is SwaggerUIMiddleware else middleware
    for middleware in ConnexionMiddleware.default_middlewares
]
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def create_app(settings: Settings | None = None) -> FlaskApp:
    settings = settings or Settings.from_env()
    if not settings.api_keys:
        raise SettingsError("API_KEYS is empty, so every request would be refused: see `make key`")
    engine = storage.make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        wait=settings.db_timeout,
    )
    storage.check_current(engine)
    auth.install(settings.api_keys)

    app = FlaskApp(
        __name__,
        specification_dir=ROOT,
        middlewares=list(CONNEXION_MIDDLEWARES),
        # connexion's own validators and key check, with the per-request setup done once.
        validator_map=VALIDATORS,
        security_map={"apiKey": auth.ApiKeyHandler},
        # The tutorial's JSON_AS_ASCII=False: names come back as UTF-8, not \u escapes.
        jsonifier=Jsonifier(json, ensure_ascii=False, separators=(",", ":")),
    )
    # connexion's router takes /v1//users for /v1/users; Flask would then answer with a
    # 308 that has no Location. A path that is not in the contract is a 404.
    app.app.url_map.merge_slashes = False
    spec = load_spec()
    app.add_api(
        spec,
        strict_validation=True,
        validate_responses=settings.validate_responses,
        swagger_ui_options=SwaggerUIOptions(
            spec_path="/v1/openapi.json",
            swagger_ui_path="/v1/ui",
            # Swagger UI keeps the key across reloads, so "Authorize" is a one-time step.
            swagger_ui_config={"persistAuthorization": True},
        ),
    )
    app.app.config.update(
        SETTINGS=settings,
        LOG_LEVEL=settings.log_level,
        LOG_FORMAT=settings.log_format,
        TRUSTED_PROXIES=",".join(settings.trusted_proxies),
        METRICS_GUARD=_metrics_guard if settings.metrics_require_key else None,
    )
    # Outermost first: the access line and request id cover what the others answer.
    JsonLogging(app)
    if settings.cors_origins:
        app.add_middleware(
            ProblemCORSMiddleware,
            position=OUTSIDE_HANDLERS,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "X-API-Key",
                "Content-Type",
                "If-Match",
                "If-None-Match",
                "X-Request-ID",
            ],
            expose_headers=["ETag", "Location", "Link", "X-Request-ID"],
        )
    app.add_middleware(ResponseHeadersMiddleware, position=OUTSIDE_HANDLERS, spec=spec)
    app.add_middleware(
        BodyLimitMiddleware, position=OUTSIDE_HANDLERS, max_bytes=settings.max_body_bytes
    )
    app.add_middleware(StrictJsonMiddleware, position=MiddlewarePosition.BEFORE_VALIDATION)
    call_flask_inline(app)
    app.app.extensions["user_store"] = storage.UserStore(engine)
    app.app.extensions["api_links"] = root.links_from_spec(spec)
    problems.init_app(app)
    return app


def _metrics_guard(headers: dict[str, str]) -> bool:
    return auth.allows(headers.get("x-api-key"), "read")


@cache
def load_spec() -> dict[str, Any]:
    """The contract, parsed once per process (connexion copies what it changes)."""
    spec: dict[str, Any] = yaml.load(SPEC.read_bytes(), Loader=yaml.CSafeLoader)
    return inline_path_parameters(spec)


def inline_path_parameters(spec: dict[str, Any]) -> dict[str, Any]:
    """Move each path's shared parameters into its operations, as OpenAPI defines them.

    connexion 3.3 appends a path's parameters to the operation's list in place each time
    one of its middlewares builds the operation, so every request validated `user_id` six
    times. An operation's own parameter wins over a shared one of the same name and `in`.
    """
    for item in spec["paths"].values():
        shared = item.pop("parameters", [])
        for method in HTTP_METHODS & item.keys():
            own = item[method].setdefault("parameters", [])
            named = {_parameter_key(p) for p in own}
            own.extend(p for p in shared if _parameter_key(p) not in named)
    return spec


def _parameter_key(parameter: dict[str, Any]) -> Any:
    return parameter.get("$ref") or (parameter["name"], parameter["in"])


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
