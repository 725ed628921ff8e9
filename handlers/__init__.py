"""How each operation in openapi.yaml is done: plain functions named by operationId."""

from flask import current_app

from storage import UserStore


def user_store() -> UserStore:
    store: UserStore = current_app.extensions["user_store"]
    return store
