"""The tutorial's approach, made to persist: Flask routes, jsonify, checks by hand.

Served by gunicorn's gevent worker: `gunicorn -k gevent bench.contenders.plain_flask:app`.
"""

from typing import Any

from flask import Flask, abort, jsonify, request

from bench.contenders import as_json, if_match, user_store
from storage import UserNotFound, VersionMismatch

app = Flask(__name__)
store = user_store()


@app.get("/v1/users")
def user_page() -> Any:
    limit = request.args.get("limit", 20, type=int)
    after = request.args.get("after", 0, type=int)
    users, total, more = store.page(after=after, limit=limit)
    next_url = f"/v1/users?limit={limit}&after={users[-1].id}" if more else None
    return jsonify(items=[as_json(u) for u in users], count=total, limit=limit, next=next_url)


@app.post("/v1/users")
def create_user() -> Any:
    body = request.get_json()
    if not isinstance(body.get("name"), str) or not isinstance(body.get("age"), int):
        abort(400)
    user = store.create(name=body["name"], age=body["age"])
    return jsonify(as_json(user)), 201, {"Location": f"/v1/users/{user.id}"}


@app.get("/v1/users/<int:user_id>")
def get_user(user_id: int) -> Any:
    try:
        user = store.get(user_id)
    except UserNotFound:
        abort(404)
    return jsonify(as_json(user)), 200, {"ETag": f'"{user.version}"'}


@app.put("/v1/users/<int:user_id>")
def replace_user(user_id: int) -> Any:
    body = request.get_json()
    if not isinstance(body.get("name"), str) or not isinstance(body.get("age"), int):
        abort(400)
    changes = {"name": body["name"], "age": body["age"]}
    try:
        user = store.update(user_id, changes, versions=if_match(request.headers.get("If-Match")))
    except UserNotFound:
        abort(404)
    except VersionMismatch:
        abort(412)
    return jsonify(as_json(user)), 200, {"ETag": f'"{user.version}"'}
