"""The contract, fuzzed in-process: schemathesis drives the ASGI app from openapi.yaml.

Response validation is on in the test settings, so connexion checks every answer
against the spec too. Examples are bounded and seeded by hypothesis's database-free
defaults; `make fuzz` (live server) goes deeper.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.config import SchemathesisConfig

from tests.keys import WRITE_KEY
from tests.live import ROOT

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def api_schema(app, monkeypatch):
    # schemathesis.toml takes the key from here, as `make contract` does.
    monkeypatch.setenv("USERS_API_KEY", WRITE_KEY)
    config = SchemathesisConfig.from_path(ROOT / "schemathesis.toml")
    schema = schemathesis.openapi.from_asgi("/v1/openapi.json", app, config=config)

    # The Python API does not apply the toml's [auth] section: tell schemathesis how a
    # client authenticates, so it also knows which requests it sends without the key.
    @schema.auth()
    class ApiKey:
        def get(self, case, context):
            return WRITE_KEY

        def set(self, case, data, context):
            case.headers = {**(case.headers or {}), "X-API-Key": data}

    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@FUZZ
def test_every_operation_honours_the_contract(case):
    response = case.call_and_validate()
    # The fuzzer holds a write key: were it refused, the run would prove nothing. (Cases
    # that test missing auth have the key stripped by schemathesis: 401, or 404 for a
    # path no operation matches, which reveals nothing either.)
    if "X-API-Key" in response.request.headers:
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code in (401, 404), response.text


def test_stateful_sequences_follow_the_links(api_schema):
    """create -> read -> update -> delete -> read, chained through the spec's OpenAPI links."""
    run_state_machine_as_test(
        api_schema.as_state_machine(),
        settings=settings(
            max_examples=15,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
