"""Aliases: atomic moves with history, per tenant, names validated, and a model's DELETE refused while aliased."""

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.api.model_factory import make_model


@pytest.fixture
def tenant(make_key) -> tuple[str, dict[str, str]]:  # noqa: ANN001
    name = f"t{secrets.token_hex(4)}"
    return name, make_key(tenant=name)


def test_put_creates_moves_and_keeps_history(client, tenant):
    name, auth = tenant
    first, second = make_model(name), make_model(name)
    created = client.put("/v1/aliases/production", headers=auth, json={"model_id": first})
    assert created.status_code == 201, created.text
    body = created.json()
    sha = next(a["sha256"] for a in body["model"]["artifacts"] if a["format"] == "safetensors")
    assert body["name"] == "production" and body["model_id"] == first and body["sha256"] == sha
    assert body["model"]["id"] == first

    again = client.put("/v1/aliases/production", headers=auth, json={"model_id": first})
    assert again.status_code == 200 and again.json()["model_id"] == first  # no move, no history row
    moved = client.put("/v1/aliases/production", headers=auth, json={"model_id": second})
    assert moved.status_code == 200 and moved.json()["model_id"] == second
    assert moved.json()["created_at"] == body["created_at"] and moved.json()["updated_at"] > body["updated_at"]

    got = client.get("/v1/aliases/production", headers=auth).json()
    assert got["model_id"] == second and got["sha256"] != sha
    history = client.get("/v1/aliases/production/history", headers=auth).json()
    assert [(h["model_id"], h["previous_model_id"]) for h in history["data"]] == [(second, first), (first, None)]

    assert client.delete("/v1/aliases/production", headers=auth).status_code == 204
    assert client.get("/v1/aliases/production", headers=auth).json()["error"]["code"] == "alias_not_found"
    assert client.delete("/v1/aliases/production", headers=auth).status_code == 404
    history = client.get("/v1/aliases/production/history?limit=2", headers=auth).json()
    assert [(h["model_id"], h["previous_model_id"]) for h in history["data"]] == [(None, second), (second, first)]
    assert history["has_more"] is True
    rest = client.get(f"/v1/aliases/production/history?before={history['data'][-1]['id']}", headers=auth).json()
    assert [(h["model_id"], h["previous_model_id"]) for h in rest["data"]] == [(first, None)]
    assert client.get("/v1/aliases/never/history", headers=auth).json()["error"]["code"] == "alias_not_found"


def test_list_aliases_by_name_with_paging(client, tenant):
    name, auth = tenant
    model = make_model(name)
    for alias in ("staging", "canary", "production"):
        assert client.put(f"/v1/aliases/{alias}", headers=auth, json={"model_id": model}).status_code == 201
    page = client.get("/v1/aliases?limit=2", headers=auth).json()
    assert [a["name"] for a in page["data"]] == ["canary", "production"] and page["has_more"]
    rest = client.get("/v1/aliases?after=production", headers=auth).json()
    assert [a["name"] for a in rest["data"]] == ["staging"] and not rest["has_more"]
    assert rest["data"][0]["model"]["id"] == model


def test_aliases_are_per_tenant(client, tenant, make_key):
    name, auth = tenant
    other_name = f"t{secrets.token_hex(4)}"
    other = make_key(tenant=other_name)
    mine, theirs = make_model(name), make_model(other_name)
    assert client.put("/v1/aliases/prod", headers=auth, json={"model_id": mine}).status_code == 201
    # The other tenant's PUT of the same name makes its own alias and leaves mine alone.
    assert client.put("/v1/aliases/prod", headers=other, json={"model_id": theirs}).status_code == 201
    assert client.get("/v1/aliases/prod", headers=auth).json()["model_id"] == mine
    assert client.get("/v1/aliases/prod", headers=other).json()["model_id"] == theirs
    # Pointing at another tenant's model is as if it did not exist.
    resp = client.put("/v1/aliases/prod", headers=other, json={"model_id": mine})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
    assert [a["name"] for a in client.get("/v1/aliases", headers=other).json()["data"]] == ["prod"]
    assert client.get("/v1/aliases/prod/history", headers=other).json()["data"][0]["model_id"] == theirs


@pytest.mark.parametrize("bad", ["Production", "-lead", ".hidden", "a b", "x" * 101, "ünïcode", "a%2Fb"])
def test_names_are_validated(client, tenant, bad):
    name, auth = tenant
    resp = client.put(f"/v1/aliases/{bad}", headers=auth, json={"model_id": make_model(name)})
    assert resp.status_code in (404, 422), resp.text  # an encoded slash may not even route
    if resp.status_code == 422:
        assert resp.json()["error"]["code"] == "validation_error"


def test_model_delete_is_refused_while_an_alias_points_to_it(client, tenant):
    name, auth = tenant
    model = make_model(name)
    client.put("/v1/aliases/prod", headers=auth, json={"model_id": model})
    client.put("/v1/aliases/backup", headers=auth, json={"model_id": model})
    resp = client.delete(f"/v1/models/{model}", headers=auth)
    assert resp.status_code == 409, resp.text
    assert resp.json()["error"]["code"] == "model_in_use" and resp.json()["error"]["details"] == {
        "aliases": ["backup", "prod"]}
    client.delete("/v1/aliases/prod", headers=auth)
    client.put("/v1/aliases/backup", headers=auth, json={"model_id": make_model(name)})
    assert client.delete(f"/v1/models/{model}", headers=auth).status_code == 204


def test_scopes(client, tenant, make_key):
    name, _ = tenant
    model = make_model(name)
    reader = make_key(("read",), tenant=name)
    resp = client.put("/v1/aliases/prod", headers=reader, json={"model_id": model})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "insufficient_scope"
    writer = make_key(("write",), tenant=name)
    assert client.put("/v1/aliases/prod", headers=writer, json={"model_id": model}).status_code == 201
    assert client.get("/v1/aliases/prod", headers=reader).status_code == 200
    assert client.delete("/v1/aliases/prod", headers=reader).status_code == 403


def test_concurrent_moves_each_land_once_in_the_history(client, tenant):
    name, auth = tenant
    models = [make_model(name) for _ in range(6)]
    barrier = threading.Barrier(len(models))

    def put(model_id: str) -> int:
        barrier.wait(timeout=30)
        return client.put("/v1/aliases/hot", headers=auth, json={"model_id": model_id}).status_code

    with ThreadPoolExecutor(len(models)) as pool:
        codes = list(pool.map(put, models))
    assert sorted(codes) == [200] * 5 + [201], codes
    moves = client.get("/v1/aliases/hot/history?limit=100", headers=auth).json()["data"][::-1]
    assert len(moves) == len(models) and {m["model_id"] for m in moves} == set(models)
    # A chain: each move starts where the previous one ended, and the alias ends where the last move did.
    assert moves[0]["previous_model_id"] is None
    assert all(b["previous_model_id"] == a["model_id"] for a, b in zip(moves, moves[1:], strict=False))
    assert client.get("/v1/aliases/hot", headers=auth).json()["model_id"] == moves[-1]["model_id"]
