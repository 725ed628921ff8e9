"""connexion 3 is an ASGI app; gunicorn's gevent worker speaks WSGI. This joins them."""

from a2wsgi import ASGIMiddleware
from a2wsgi.wsgi_typing import WSGIApp
from connexion import FlaskApp


def to_wsgi(app: FlaskApp) -> WSGIApp:
    return ASGIMiddleware(app)  # type: ignore[arg-type]
