"""connexion 2.14 on Flask 2.2 with users-api's contract, as its documentation builds one.

Runs in its own environment (bench/.venv-connexion2, `make bench` makes it) under the
same gunicorn gevent worker as users-api: `gunicorn -c bench/baseline.gunicorn.conf.py
bench.contenders.connexion2_app:app`.
"""

from pathlib import Path

import connexion
import yaml
from connexion.resolver import Resolver

from bench.contenders import spec_handlers

SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"

app = connexion.App(__name__)
app.add_api(
    spec_handlers.patch_spec(yaml.safe_load(SPEC.read_text(encoding="utf-8"))),
    strict_validation=True,
    resolver=Resolver(spec_handlers.resolve),
)
spec_handlers.init_flask(app.app)
