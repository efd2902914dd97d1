"""Property-based: schemathesis against the app's own OpenAPI document, through ASGI with a valid key.

Each operation gets positive and negative examples; every answer must be no 5xx, a documented status, the
documented content type and a body that matches its schema. Half of the examples aim at real resources of
the key's tenant, so the checks reach past 404s."""

import socket
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.security.helpers import ready_dataset, succeeded_job

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """(method, path, mode) for every operation; negative only where something can break the schema."""
    from app.main import create_app

    out = []
    for path, item in create_app().openapi()["paths"].items():
        for method, op in item.items():
            out.append((method.upper(), path, GenerationMode.POSITIVE))
            # Free-form string path parameters alone cannot be made invalid.
            if op.get("requestBody") or any(p["in"] != "path" for p in op.get("parameters", [])):
                out.append((method.upper(), path, GenerationMode.NEGATIVE))
    return out


@pytest.fixture(scope="module", autouse=True)
def webhook_hosts(client) -> Iterator[None]:  # noqa: ANN001
    """The receiver below is on 127.0.0.1 (TAAS_WEBHOOK_ALLOW_HOSTS=127.0.0.1); generated URLs name hosts that
    must not become DNS questions: here every name is unresolvable (422 webhook_url_unresolvable)."""
    from app.config import get_settings
    from app.webhooks import addresses

    def no_dns(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "not resolved in tests")

    mp = pytest.MonkeyPatch()
    mp.setattr(get_settings(), "webhook_allow_hosts", ["127.0.0.1"])
    mp.setattr(addresses, "resolve", no_dns)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def api_schema(client):  # noqa: ANN001
    return schemathesis.openapi.from_asgi("/openapi.json", client.app)


@pytest.fixture(scope="module")
def tenant(client, tmp_path_factory) -> tuple[dict[str, str], dict[str, str]]:  # noqa: ANN001
    """An admin key and real resources of its tenant, by path parameter name."""
    from app.db import get_sessionmaker
    from app.keys.service import create_key

    with get_sessionmaker()() as session:
        row, key = create_key(session=session, tenant="schemathesis", scopes=["admin"])
    auth = {"Authorization": f"Bearer {key}"}
    ds = ready_dataset(client, auth, tmp_path_factory.mktemp("st"))
    # Subscribed before the job ends, so that its delivery log has an entry (to a closed port: retried).
    hook = client.post("/v1/webhooks", headers=auth, json={"url": "http://127.0.0.1:9/hook",
                                                           "events": ["job.succeeded"]}).json()
    job, model = succeeded_job(client, auth, ds)
    return auth, {"dataset_id": ds["id"], "job_id": job, "model_id": model, "fmt": "safetensors",
                  "key_id": row.id, "webhook_id": hook["id"]}


@pytest.mark.parametrize("method,path,mode", _operations(), ids=lambda x: str(x))
def test_no_5xx_and_responses_match_the_schema(api_schema, tenant, method, path, mode):
    auth, ids = tenant
    op = api_schema[path][method]
    names = [p["name"] for p in op.definition.raw.get("parameters", []) if p["in"] == "path"]
    # Real ids reach past the 404s; DELETE gets only generated ones, so the resources outlive the run.
    real = {n: ids[n] for n in names if n in ids} if method != "DELETE" else {}
    strategy = op.as_strategy(generation_mode=mode)
    if real and mode == GenerationMode.POSITIVE:
        strategy = st.one_of(strategy, op.as_strategy(generation_mode=mode, path_parameters=real))

    @given(case=strategy)
    @settings(max_examples=EXAMPLES[mode], deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(case) -> None:  # noqa: ANN001
        case.call_and_validate(headers=auth, checks=CHECKS)

    check()
