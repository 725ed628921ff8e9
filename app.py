"""Wiring: create_app(settings) builds the connexion app from the contract and its parts."""

from typing import Any

from connexion import FlaskApp
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions

import apikeys
import connexion_ext
import problems
import storage
from contract import SPEC_URL, UI_PATH, contract_methods, load_spec
from handlers import root
from logging_ext import JsonLogging
from middleware.body_guard import BodyLimitMiddleware, StrictJsonMiddleware
from middleware.cors import ProblemCORSMiddleware
from middleware.headers import ResponseHeadersMiddleware
from middleware.metrics import MetricsEndpoint
from middleware.rate_limits import KeyRateLimits, RateLimitAnswers, RateLimits
from settings import Settings, SettingsError

OUTSIDE_HANDLERS = MiddlewarePosition.BEFORE_EXCEPTION
# Everything a browser on an allowed origin may send and read (CORS_ORIGINS), besides
# the contract's methods.
CORS_REQUEST_HEADERS = ["X-API-Key", "Content-Type", "If-Match", "If-None-Match", "X-Request-ID"]
CORS_RESPONSE_HEADERS = [
    *("ETag", "Location", "Link", "X-Request-ID"),
    *("Retry-After", "RateLimit", "RateLimit-Policy"),  # when to come back after a 429/503
]


def create_app(settings: Settings | None = None) -> FlaskApp:
    settings = settings or Settings.from_env()
    if not settings.api_keys:
        raise SettingsError("API_KEYS is empty, so every request would be refused: see `make key`")
    keyring = apikeys.Keyring.from_entries(settings.api_keys)
    engine = storage.make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        wait=settings.db_timeout,
        pooler=settings.db_pooler,
    )
    storage.check_current(engine)
    apikeys.install(keyring)
    spec = connexion_ext.load_contract(load_spec())

    app = FlaskApp(
        __name__,
        middlewares=list(connexion_ext.MIDDLEWARES),
        validator_map=connexion_ext.VALIDATORS,
        security_map=connexion_ext.SECURITY,
        # The tutorial's JSON_AS_ASCII=False: names come back as UTF-8, not \u escapes.
        jsonifier=connexion_ext.OrjsonJsonifier(),
    )
    connexion_ext.customise(app)
    # connexion's router takes /v1//users for /v1/users; Flask would then answer with a
    # 308 that has no Location. A path that is not in the contract is a 404.
    app.app.url_map.merge_slashes = False
    app.add_api(
        spec,
        strict_validation=True,
        validate_responses=settings.validate_responses,
        swagger_ui_options=SwaggerUIOptions(
            spec_path=SPEC_URL,
            swagger_ui_path=UI_PATH,
            # Swagger UI keeps the key across reloads, so "Authorize" is a one-time step.
            swagger_ui_config={"persistAuthorization": True},
        ),
    )
    limits = RateLimits.from_settings(settings.rate_limits, settings.rate_limit_storage, spec)
    _add_middleware(app, settings, keyring, spec, limits)
    problems.init_app(app, spec)
    app.app.extensions["user_store"] = storage.UserStore(engine)
    app.app.config["REQUIRE_IF_MATCH"] = settings.require_if_match
    app.app.extensions["api_links"] = root.links_from_spec(spec)
    return app


def _add_middleware(
    app: FlaskApp,
    settings: Settings,
    keyring: apikeys.Keyring,
    spec: dict[str, Any],
    limits: RateLimits | None,
) -> None:
    """Outermost first: the access line and request id cover what the others answer."""
    JsonLogging(
        app,
        level=settings.log_level,
        log_format=settings.log_format,
        trusted_proxies=settings.trusted_proxies,
    )
    app.add_middleware(problems.ProblemBoundary, position=OUTSIDE_HANDLERS)
    if settings.cors_origins:
        app.add_middleware(
            ProblemCORSMiddleware,
            position=OUTSIDE_HANDLERS,
            allow_origins=list(settings.cors_origins),
            allow_methods=contract_methods(spec),
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_RESPONSE_HEADERS,
        )
    app.add_middleware(ResponseHeadersMiddleware, position=OUTSIDE_HANDLERS, spec=spec)
    if limits:
        # Outside connexion's exception handling and MetricsEndpoint, so it sees every
        # answer, 401s included; inside CORS and the security headers, which its 429s get.
        app.add_middleware(
            RateLimitAnswers,
            position=OUTSIDE_HANDLERS,
            limits=limits,
            trusted_proxies=settings.trusted_proxies,
        )
    app.add_middleware(
        MetricsEndpoint,
        position=OUTSIDE_HANDLERS,
        keyring=keyring if settings.metrics_require_key else None,
    )
    app.add_middleware(
        BodyLimitMiddleware,
        position=OUTSIDE_HANDLERS,
        max_bytes=settings.max_body_bytes,
        timeout=settings.body_timeout,
    )
    if limits:
        # After connexion's key check, before the body is parsed or validated.
        app.add_middleware(
            KeyRateLimits, position=MiddlewarePosition.BEFORE_VALIDATION, limits=limits
        )
    app.add_middleware(
        StrictJsonMiddleware, position=MiddlewarePosition.BEFORE_VALIDATION, spec=spec
    )


def __getattr__(name: str) -> Any:
    # `app` (ASGI) and `wsgi` (for gunicorn's gevent worker) are built on first use, not
    # at import, so tests and tools can import create_app without touching a database.
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    if name == "wsgi":
        globals()["wsgi"] = connexion_ext.to_wsgi(__getattr__("app"))
        return globals()["wsgi"]
    raise AttributeError(name)
