"""The contract, fuzzed in-process: schemathesis drives the ASGI app from openapi.yaml.

Response validation is on in the test settings, so connexion checks every answer
against the spec too. Examples are bounded and seeded by hypothesis's database-free
defaults; `make fuzz` (live server) goes deeper.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def api_schema(app):
    return schemathesis.openapi.from_asgi("/v1/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@FUZZ
def test_every_operation_honours_the_contract(case):
    case.call_and_validate()


def test_stateful_sequences_follow_the_links(api_schema):
    """create -> read -> update -> delete -> read, chained through the spec's OpenAPI links."""
    machine = api_schema.as_state_machine()
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=15,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
