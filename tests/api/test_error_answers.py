"""Error answers that routes declare and no other in-process test produced on them: each route answers, with the
documented code, what its OpenAPI responses say it can (tests/contract/test_error_codes.py holds them to it)."""

import secrets
import threading

import pytest

from tests.api.model_factory import colour_onnx, make_model
from tests.api.test_jobs import spec
from tests.api.test_predict import files, png

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    return colour_onnx()


@pytest.fixture
def tenant() -> str:
    return f"t{secrets.token_hex(4)}"


def _alias(client, make_key, tenant: str, model_id: str) -> dict[str, str]:  # noqa: ANN001
    auth = make_key(("write",), tenant=tenant)
    assert client.put("/v1/aliases/prod", headers=auth, json={"model_id": model_id}).status_code == 201
    return auth


def _code(resp) -> str:  # noqa: ANN001
    return resp.json()["error"]["code"]


def _predict_paths(client, make_key, tenant: str, model_id: str) -> tuple[dict[str, str], list[str]]:  # noqa: ANN001
    return _alias(client, make_key, tenant, model_id), [f"/v1/models/{model_id}/predict", "/v1/aliases/prod/predict"]


def test_predicting_by_alias_answers_the_models_refusals(client, make_key, tenant, onnx_bytes, monkeypatch):
    from app.config import get_settings

    auth, _ = _predict_paths(client, make_key, tenant, make_model(tenant, onnx=onnx_bytes))
    url = "/v1/aliases/prod/predict"
    resp = client.post(url, headers=auth, files=files(("ok.png", png("red")), ("broken.png", b"not an image")))
    assert resp.status_code == 422 and _code(resp) == "bad_image"
    monkeypatch.setattr(get_settings(), "predict_max_images", 1)
    resp = client.post(url, headers=auth, files=files(*[("r.png", png("red"))] * 2))
    assert resp.status_code == 413 and _code(resp) == "too_many_images"
    monkeypatch.setattr(get_settings(), "predict_max_bytes", 4096)
    resp = client.post(url, headers=auth, files=files(("r.png", png("red", 64))))
    assert resp.status_code == 413 and _code(resp) == "upload_too_large"


def test_predicting_by_alias_with_a_model_without_onnx_is_409(client, make_key, tenant):
    auth = _alias(client, make_key, tenant, make_model(tenant))
    resp = client.post("/v1/aliases/prod/predict", headers=auth, files=files(("r.png", png("red"))))
    assert resp.status_code == 409 and _code(resp) == "onnx_unavailable"


def test_a_model_whose_preprocessing_serving_cannot_read_is_409(client, make_key, tenant, onnx_bytes):
    model_id = make_model(tenant, onnx=onnx_bytes, preprocessing={"resize": "big"})
    auth, paths = _predict_paths(client, make_key, tenant, model_id)
    for path in paths:
        resp = client.post(path, headers=auth, files=files(("r.png", png("red"))))
        assert resp.status_code == 409 and _code(resp) == "preprocessing_unavailable", resp.text


def test_a_full_prediction_pool_is_503_on_both_routes(client, make_key, tenant, onnx_bytes):
    from app.config import get_settings
    from app.serving.runtime import get_runtime

    auth, paths = _predict_paths(client, make_key, tenant, make_model(tenant, onnx=onnx_bytes))
    runtime, release, s = get_runtime(), threading.Event(), get_settings()
    held = [runtime.submit(release.wait, 30) for _ in range(s.predict_workers + s.predict_queue)]
    try:
        for path in paths:
            resp = client.post(path, headers=auth, files=files(("r.png", png("red"))))
            assert resp.status_code == 503 and _code(resp) == "server_busy", resp.text
    finally:
        release.set()
    assert all(f.result(timeout=30) for f in held)
    assert client.post(paths[1], headers=auth, files=files(("r.png", png("red")))).status_code == 200


def test_an_alias_whose_model_vanished_is_404_model_not_found(client, make_key, tenant, onnx_bytes):
    """The model's DELETE refuses while an alias points to it; were its row gone anyway, the alias's routes say
    which of the two is missing."""
    from sqlalchemy import delete

    from app.db import get_sessionmaker
    from app.models import Model

    model_id = make_model(tenant, onnx=onnx_bytes)
    auth = _alias(client, make_key, tenant, model_id)
    with get_sessionmaker()() as s:
        s.execute(delete(Model).where(Model.id == model_id))
        s.commit()
    for resp in (client.get("/v1/aliases/prod", headers=auth),
                 client.get("/v1/aliases/prod/artifacts/onnx", headers=auth),
                 client.post("/v1/aliases/prod/predict", headers=auth, files=files(("r.png", png("red"))))):
        assert resp.status_code == 404 and _code(resp) == "model_not_found", resp.text


def test_a_range_beyond_the_aliased_artifact_is_416(client, make_key, tenant, onnx_bytes):
    auth = _alias(client, make_key, tenant, make_model(tenant, onnx=onnx_bytes))
    resp = client.get("/v1/aliases/prod/artifacts/onnx", headers={**auth, "Range": "bytes=99999999-"})
    assert resp.status_code == 416 and _code(resp) == "range_not_satisfiable"


def test_a_webhook_create_still_in_progress_under_its_key_is_409(client, make_key, tenant):
    from app.db import get_sessionmaker
    from app.idempotency import body_hash
    from app.models import IdempotencyRecord
    from app.webhooks.schemas import WebhookCreate

    body = {"url": "https://hooks.example.com/taas", "events": ["job.succeeded"]}
    with get_sessionmaker()() as s:  # another request holds the key and has not answered yet
        s.add(IdempotencyRecord(tenant=tenant, route="webhooks.create", key="k1",
                                body_sha256=body_hash(WebhookCreate(**body).model_dump_json())))
        s.commit()
    resp = client.post("/v1/webhooks", headers={**make_key(tenant=tenant), "Idempotency-Key": "k1"}, json=body)
    assert resp.status_code == 409 and _code(resp) == "idempotency_in_progress", resp.text


def test_deleting_a_job_that_has_not_finished_is_409(client, auth, ready_dataset):
    job = client.post("/v1/jobs", headers=auth, json=spec(ready_dataset["id"])).json()
    resp = client.delete(f"/v1/jobs/{job['id']}", headers=auth)
    assert resp.status_code == 409 and _code(resp) == "job_not_finished"
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth).status_code == 200


def test_deleting_a_dataset_a_job_uses_is_409(client, auth, ready_dataset):
    assert client.post("/v1/jobs", headers=auth, json=spec(ready_dataset["id"])).status_code == 201
    resp = client.delete(f"/v1/datasets/{ready_dataset['id']}", headers=auth)
    assert resp.status_code == 409 and _code(resp) == "dataset_in_use"


def test_base_model_weights_over_the_byte_cap_are_413(client, auth, monkeypatch):
    from app.config import get_settings

    monkeypatch.setattr(get_settings(), "max_weights_upload_bytes", 1024)
    resp = client.post("/v1/base-models", headers=auth, data={"arch": "resnet18"},
                       files={"file": ("w.safetensors", secrets.token_bytes(4096))})
    assert resp.status_code == 413 and _code(resp) == "upload_too_large", resp.text


def _public_operations(app) -> list[tuple[str, str]]:  # noqa: ANN001
    """(method, URL) of every operation of the public document, its path parameters filled with valid values."""
    from fastapi.routing import APIRoute

    values = {"name": "prod", "fmt": "onnx"}
    out = []
    for route in app.routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            url = route.path
            for param in route.param_convertors:
                url = url.replace(f"{{{param}}}", values.get(param, "x1"))
            out += [(method, url) for method in sorted(route.methods)]
    return out


def test_every_public_route_checks_the_key_and_its_scope(client, tenant):
    """Each answers 401 without a key or with an unknown one, and 403 to a key whose stored scopes lack the one it
    needs: API-made keys always have read, so for the read routes only a key row edited to no scopes shows it."""
    from sqlalchemy import update

    from app.db import get_sessionmaker
    from app.keys.service import create_key
    from app.models import ApiKey

    with get_sessionmaker()() as s:
        row, key = create_key(session=s, tenant=tenant, scopes=["read"])
        s.execute(update(ApiKey).where(ApiKey.id == row.id).values(scopes=[]))
        s.commit()
    operations = _public_operations(client.app)
    assert len(operations) > 30
    for headers, status, code in (({}, 401, "missing_api_key"),
                                  ({"Authorization": "Bearer taas_nope_nope"}, 401, "invalid_api_key"),
                                  ({"Authorization": f"Bearer {key}"}, 403, "insufficient_scope")):
        for method, url in operations:
            resp = client.request(method, url, headers=headers)
            assert (resp.status_code, _code(resp)) == (status, code), f"{method} {url}: {resp.text}"
