"""A Python client generated from openapi.yaml at test time, used against the live server.

Proves HTTP clients can consume the contract as published: openapi-python-client builds
the package into a temporary folder (never committed) and drives a full user lifecycle.
"""

import importlib
import subprocess
import sys

import pytest

from tests.helpers import ROOT, WRITE_KEY

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(ROOT / "openapi.yaml"),
            "--output-path",
            str(out / "users_api_client"),
            "--meta",
            "none",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("users_api_client")
    finally:
        sys.path.remove(str(out))


def test_a_generated_client_runs_the_whole_lifecycle(generated, live_server, live_client):
    from users_api_client import AuthenticatedClient
    from users_api_client.api.users import (
        create_user,
        delete_user,
        get_user,
        replace_user,
        update_user,
        user_page,
    )
    from users_api_client.models import Problem, User, UserInput, UserPatch

    with AuthenticatedClient(
        base_url=live_server.base_url, token=WRITE_KEY, prefix="", auth_header_name="X-API-Key"
    ) as client:
        created = [
            create_user.sync(client=client, body=UserInput(name=f"user {i}", age=20 + i))
            for i in range(5)
        ]
        assert all(isinstance(user, User) for user in created)

        seen, after = [], 0
        while True:
            page = user_page.sync(client=client, limit=2, after=after)
            seen += [user.id for user in page.items]
            if not page.next_:
                break
            after = page.items[-1].id
        assert seen == [user.id for user in created]

        first = created[0]
        patched = update_user.sync_detailed(first.id, client=client, body=UserPatch(age=99))
        assert patched.status_code == 200 and patched.parsed.age == 99
        etag = patched.headers["etag"]

        stale = replace_user.sync_detailed(
            first.id, client=client, body=UserInput(name="Late", age=1), if_match='"1"'
        )
        assert stale.status_code == 412 and isinstance(stale.parsed, Problem)
        replaced = replace_user.sync_detailed(
            first.id, client=client, body=UserInput(name="Grace", age=85), if_match=etag
        )
        assert replaced.status_code == 200 and replaced.parsed.name == "Grace"

        gone = delete_user.sync_detailed(first.id, client=client, if_match=replaced.headers["etag"])
        assert gone.status_code == 204
        missing = get_user.sync_detailed(first.id, client=client)
        assert missing.status_code == 404 and isinstance(missing.parsed, Problem)
