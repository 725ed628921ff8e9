"""Stock connexion 3 with users-api's contract, served as its documentation serves it.

A FlaskApp with connexion's default middleware (sync handlers reach Flask through its
thread pool), under uvicorn: `uvicorn bench.contenders.connexion3_app:app`. None of
users-api's changes to connexion's stack (serving/, middleware/) apply here.
"""

from pathlib import Path

import connexion
import yaml
from connexion.resolver import Resolver

from bench.contenders import spec_handlers

SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"

app = connexion.FlaskApp(__name__)
app.add_api(
    spec_handlers.patch_spec(yaml.safe_load(SPEC.read_text(encoding="utf-8"))),
    strict_validation=True,
    resolver=Resolver(spec_handlers.resolve),
)
spec_handlers.init_flask(app.app)
