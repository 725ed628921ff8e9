"""ASGI middleware of our own: what must touch requests before or after connexion's stack."""
