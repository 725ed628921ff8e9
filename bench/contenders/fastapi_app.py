"""What many would pick instead: FastAPI with pydantic models, served by uvicorn.

Plain `def` endpoints, as FastAPI's docs advise for blocking database calls (they run in
its thread pool): `uvicorn bench.contenders.fastapi_app:app`.
"""

from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Response
from pydantic import BaseModel, Field

from bench.contenders import as_json, if_match, user_store
from storage import UserNotFound, VersionMismatch

app = FastAPI()
store = user_store()


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    age: int = Field(ge=0, le=150)


@app.get("/v1/users")
def user_page(limit: int = 20, after: int = 0) -> dict[str, Any]:
    users, total, more = store.page(after=after, limit=limit)
    next_url = f"/v1/users?limit={limit}&after={users[-1].id}" if more else None
    return {"items": [as_json(u) for u in users], "count": total, "limit": limit, "next": next_url}


@app.post("/v1/users", status_code=201)
def create_user(body: UserIn, response: Response) -> dict[str, Any]:
    user = store.create(name=body.name, age=body.age)
    response.headers["Location"] = f"/v1/users/{user.id}"
    return as_json(user)


@app.get("/v1/users/{user_id}")
def get_user(user_id: int, response: Response) -> dict[str, Any]:
    try:
        user = store.get(user_id)
    except UserNotFound:
        raise HTTPException(404) from None
    response.headers["ETag"] = f'"{user.version}"'
    return as_json(user)


@app.put("/v1/users/{user_id}")
def replace_user(
    user_id: int,
    body: UserIn,
    response: Response,
    if_match_header: Annotated[str | None, Header(alias="If-Match")] = None,
) -> dict[str, Any]:
    changes = {"name": body.name, "age": body.age}
    try:
        user = store.update(user_id, changes, versions=if_match(if_match_header))
    except UserNotFound:
        raise HTTPException(404) from None
    except VersionMismatch:
        raise HTTPException(412) from None
    response.headers["ETag"] = f'"{user.version}"'
    return as_json(user)
