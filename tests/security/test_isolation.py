"""Isolation and keys, over the app's whole route table: another tenant gets 404, no key 401, a missing scope 403."""

import hashlib
import random
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import text

from tests.factories import dataset_members, image_bytes, write_zip
from tests.security.conftest import WORKER, upload
from tests.security.helpers import base_model, ready_dataset, succeeded_job
from tests.security.routes import RouteInfo, internal_routes, public_routes


@dataclass
class Tenant:
    name: str
    keys: dict[str, str] = field(default_factory=dict)  # scope -> plaintext
    key_ids: dict[str, str] = field(default_factory=dict)

    def h(self, scope: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}


@dataclass
class World:
    a: Tenant
    b: Tenant
    ids: dict[str, str]  # path parameter name -> a resource of tenant a
    plaintexts: list[str]


def _key(tenant: Tenant, label: str, scopes: list[str], plaintexts: list[str]) -> None:
    from app.db import get_sessionmaker
    from app.keys.service import create_key

    with get_sessionmaker()() as session:
        row, key = create_key(session=session, tenant=tenant.name, scopes=scopes, name=label)
    tenant.keys[label], tenant.key_ids[label] = key, row.id
    plaintexts.append(key)


@pytest.fixture(scope="module", autouse=True)
def webhook_hosts(client) -> Iterator[None]:  # noqa: ANN001
    """The endpoint made below is on 127.0.0.1: allow-listed (TAAS_WEBHOOK_ALLOW_HOSTS=127.0.0.1)."""
    from app.config import get_settings

    mp = pytest.MonkeyPatch()
    mp.setattr(get_settings(), "webhook_allow_hosts", ["127.0.0.1"])
    yield
    mp.undo()


@pytest.fixture(scope="module")
def world(client, tmp_path_factory) -> World:  # noqa: ANN001
    plaintexts: list[str] = []
    a, b = Tenant(f"a{secrets.token_hex(4)}"), Tenant(f"b{secrets.token_hex(4)}")
    for t in (a, b):
        for label, scopes in {"admin": ["admin"], "write": ["write"], "read": ["read"]}.items():
            _key(t, label, scopes, plaintexts)
    _key(a, "victim", ["read"], plaintexts)  # what another tenant's DELETE /v1/keys/{id} aims at
    ds = ready_dataset(client, a.h(), tmp_path_factory.mktemp("iso"))
    ds_id = ds["id"]
    # 1.5 MiB artifact: over the JSON body cap, which must not apply to streamed uploads.
    done_job, model = succeeded_job(client, a.h(), ds, artifact=b"w" * (3 * 1024 * 1024 // 2))
    queued = client.post("/v1/jobs", headers=a.h(), json={
        "dataset_id": ds_id, "base_model": {"arch": "resnet18", "weights": "none"}}).json()["id"]
    ids = {"dataset_id": ds_id, "job_id": queued, "model_id": model, "key_id": a.key_ids["victim"],
           "fmt": "safetensors", "base_model_id": base_model(a.name), "name": f"alias-{secrets.token_hex(3)}"}
    ids["bm_id"] = ids["weights_id"] = ids["base_model_id"]
    ids["alias"] = ids["alias_name"] = ids["name"]
    ids["done_job_id"] = done_job
    if any(r.path.startswith("/v1/webhooks/") for r in public_routes(client.app)):
        resp = client.post("/v1/webhooks", headers=a.h(), json={"url": "http://127.0.0.1:9/hook",
                                                               "events": ["job.succeeded"]})
        assert resp.status_code == 201, resp.text
        ids["webhook_id"] = resp.json()["id"]
    if any(r.method == "PUT" and r.path.startswith("/v1/aliases/") for r in public_routes(client.app)):
        resp = client.put(f"/v1/aliases/{ids['name']}", headers=a.h(), json={"model_id": model})
        assert resp.status_code in (200, 201), resp.text
    return World(a=a, b=b, ids=ids, plaintexts=plaintexts)


def _request_kwargs(r: RouteInfo, world: World) -> dict:
    """A body that passes validation, so that what answers is the route's own permission check."""
    if "predict" in r.path:
        png = image_bytes((200, 30, 30), 8, random.Random(0))
        return {"files": [("files", ("x.png", png, "image/png"))]}
    if r.path.startswith("/v1/aliases/") and r.method == "PUT":
        return {"json": {"model_id": world.ids["model_id"]}}
    if r.has_body:
        return {"json": {}}
    return {}


def _resource_routes(app) -> list[RouteInfo]:  # noqa: ANN001
    return [r for r in public_routes(app) if r.params]


def test_the_route_table_is_walked(client):
    routes = {str(r) for r in public_routes(client.app)}
    # A sanity floor: if the walk broke, every test below would pass vacuously.
    for expected in ("GET /v1/datasets/{dataset_id}", "DELETE /v1/jobs/{job_id}", "POST /v1/jobs",
                     "GET /v1/models/{model_id}/artifacts/{fmt}", "DELETE /v1/keys/{key_id}"):
        assert expected in routes, routes
    assert len(internal_routes(client.app)) >= 5


def test_another_tenants_resources_answer_404_on_every_route(client, world):
    checked = []
    for r in _resource_routes(client.app):
        resp = client.request(r.method, r.url(world.ids), headers=world.b.h("admin"), **_request_kwargs(r, world))
        assert resp.status_code == 404, f"{r}: {resp.status_code} {resp.text[:300]}"
        assert resp.json()["error"]["code"].endswith("not_found"), f"{r}: {resp.text[:300]}"
        checked.append(str(r))
    assert len(checked) >= 10, checked
    # Nothing of tenant a moved.
    a = world.a.h()
    assert client.get(f"/v1/datasets/{world.ids['dataset_id']}", headers=a).status_code == 200
    assert client.get(f"/v1/jobs/{world.ids['job_id']}", headers=a).json()["status"] == "queued"
    assert client.get(f"/v1/models/{world.ids['model_id']}", headers=a).status_code == 200
    assert client.get("/v1/datasets", headers=world.a.h("victim")).status_code == 200  # b could not revoke it


def test_lists_never_show_another_tenants_resources(client, world):
    leaks = [world.ids[k] for k in ("dataset_id", "job_id", "model_id", "key_id", "done_job_id")] + [world.a.name]
    for r in public_routes(client.app):
        if r.method != "GET" or r.params:
            continue
        resp = client.get(r.path, headers=world.b.h("admin"))
        assert resp.status_code == 200, f"{r}: {resp.text[:300]}"
        assert not [x for x in leaks if x in resp.text], f"{r} shows tenant a's resources"


def test_creating_with_another_tenants_resources_is_refused(client, world):
    b = world.b.h("write")
    ds = {"dataset_id": world.ids["dataset_id"], "base_model": {"arch": "resnet18", "weights": "none"}}
    resp = client.post("/v1/jobs", headers=b, json=ds)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "dataset_not_found"
    own = client.post("/v1/jobs?dry_run=true", headers=b, json=ds)
    assert own.status_code == 404
    for weights in (world.ids["model_id"], world.ids["base_model_id"]):
        # b has no dataset of its own either, but the weights must not be reachable through a's dataset check.
        spec = {**ds, "base_model": {"arch": "resnet18", "weights": weights}}
        resp = client.post("/v1/jobs?dry_run=true", headers=world.a.h(), json=spec)
        assert resp.status_code == 200, resp.text  # a may use its own
    # b cannot start from a's model or base model, even with a dataset of its own.
    from app.db import get_sessionmaker
    from app.models import Dataset

    with get_sessionmaker()() as s:
        theirs = s.get(Dataset, world.ids["dataset_id"])
        mine = Dataset(**{c.name: getattr(theirs, c.name) for c in Dataset.__table__.columns})
        mine.id, mine.tenant = f"ds_{secrets.token_hex(8)}", world.b.name
        s.add(mine)
        s.commit()
    for weights in (world.ids["model_id"], world.ids["base_model_id"]):
        spec = {"dataset_id": mine.id, "base_model": {"arch": "resnet18", "weights": weights}}
        resp = client.post("/v1/jobs", headers=b, json=spec)
        assert resp.status_code == 422 and resp.json()["error"]["code"] == "weights_unavailable", resp.text


@pytest.mark.parametrize("auth", ["none", "garbage", "malformed", "worker-token", "basic"])
def test_every_public_route_needs_a_valid_key(client, world, auth):
    headers = {"none": {}, "garbage": {"Authorization": "Bearer taas_nope_nope"},
               "malformed": {"Authorization": "Bearer " + "x" * 5000},
               "worker-token": WORKER, "basic": {"Authorization": "Basic dXNlcjpwYXNz"}}[auth]
    for r in public_routes(client.app):
        resp = client.request(r.method, r.url(world.ids) if r.params else r.path, headers=headers)
        assert resp.status_code == 401, f"{r}: {resp.status_code} {resp.text[:200]}"
        assert resp.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")


def test_every_route_without_its_scope_is_403(client, world):
    lesser = {"write": "read", "admin": "write"}
    checked = []
    for r in public_routes(client.app):
        assert r.scope in ("read", "write", "admin"), f"{r} demands no scope"
        if r.scope == "read":
            continue
        resp = client.request(r.method, r.url(world.ids) if r.params else r.path,
                              headers=world.a.h(lesser[r.scope]), **_request_kwargs(r, world))
        assert resp.status_code == 403, f"{r}: {resp.status_code} {resp.text[:200]}"
        assert resp.json()["error"]["code"] == "insufficient_scope"
        checked.append(str(r))
    assert "DELETE /v1/datasets/{dataset_id}" in checked and "GET /v1/keys" in checked
    assert client.get(f"/v1/datasets/{world.ids['dataset_id']}", headers=world.a.h()).status_code == 200


def test_public_keys_cannot_call_internal_routes(client, world):
    for r in internal_routes(client.app):
        values = {**world.ids, "weights_id": world.ids["model_id"], "job_id": world.ids["done_job_id"]}
        for headers in ({}, world.a.h("admin"), world.b.h("admin"), {"Authorization": "Bearer test-worker-tok"}):
            resp = client.request(r.method, r.url(values), headers=headers)
            assert resp.status_code == 401, f"{r}: {resp.status_code} {resp.text[:200]}"


def test_revoked_keys_stop_working_at_once(client, world):
    from app.db import get_sessionmaker
    from app.keys.service import create_key

    admin = world.a.h()
    made = client.post("/v1/keys", headers=admin, json={"scopes": ["write"], "name": "soon revoked"})
    assert made.status_code == 201
    key, key_id = made.json()["key"], made.json()["id"]
    world.plaintexts.append(key)
    h = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/datasets", headers=h).status_code == 200
    assert client.delete(f"/v1/keys/{key_id}", headers=admin).status_code == 204
    for _ in range(3):  # no cache lets it through afterwards
        resp = client.get("/v1/datasets", headers=h)
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key"
    assert client.delete(f"/v1/keys/{key_id}", headers=admin).status_code == 204  # revoking again is harmless
    listed = {k["id"]: k for k in client.get("/v1/keys", headers=admin).json()["data"]}
    assert listed[key_id]["revoked_at"] is not None and "key" not in listed[key_id]
    # An admin key can revoke itself; its next request is refused.
    with get_sessionmaker()() as s:
        row, own = create_key(session=s, tenant=world.a.name, scopes=["admin"])
    world.plaintexts.append(own)
    oh = {"Authorization": f"Bearer {own}"}
    assert client.delete(f"/v1/keys/{row.id}", headers=oh).status_code == 204
    assert client.get("/v1/keys", headers=oh).status_code == 401
    # The right prefix with a wrong secret is refused too.
    prefix = world.a.keys["read"].split("_")[1]
    assert client.get("/v1/datasets", headers={"Authorization": f"Bearer taas_{prefix}_wrong"}).status_code == 401


def test_no_plaintext_key_is_stored_anywhere(client, world):
    from app.db import get_engine
    from app.storage import get_storage

    made = client.post("/v1/keys", headers={**world.a.h(), "Idempotency-Key": "k-1"}, json={"scopes": ["read"]})
    world.plaintexts.append(made.json()["key"])
    client.get("/v1/datasets", headers={"Authorization": f"Bearer {made.json()['key']}x"})  # a failed attempt
    secrets_ = [k.split("_", 2)[2] for k in world.plaintexts]
    assert len(secrets_) >= 10
    engine = get_engine()
    with engine.connect() as conn:
        columns = conn.execute(text(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'bytea')")).all()
        assert ("api_keys", "hmac") in columns
        found = []
        for table, column in columns:
            for s in secrets_:
                hit = conn.execute(text(f'SELECT 1 FROM "{table}" WHERE "{column}"::text LIKE :p LIMIT 1'),
                                   {"p": f"%{s}%"}).first()
                if hit:
                    found.append((table, column))
        assert found == []
        stored = set(conn.execute(text("SELECT hmac FROM api_keys")).scalars())
    # The stored digest is keyed by the server's pepper: a bare hash of the key would be guessable offline.
    assert not stored & {hashlib.sha256(k.encode()).hexdigest() for k in world.plaintexts}
    for path in get_storage().root.rglob("*"):
        if path.is_file() and path.stat().st_size < 10 * 1024**2:
            data = path.read_bytes()
            assert not [s for s in secrets_ if s.encode() in data], path


# --- Idempotency-Key under concurrency ---------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["testclient", "uvicorn"])
def test_twenty_simultaneous_identical_job_posts_make_one_job(client, server, make_key, tmp_path, transport):
    auth = make_key(("write",))
    ds_id = ready_dataset(client, auth, tmp_path)["id"]
    body = {"dataset_id": ds_id, "base_model": {"arch": "resnet18", "weights": "none"}}
    headers = {**auth, "Idempotency-Key": f"same-{transport}"}
    barrier = threading.Barrier(20)
    host, port = server

    def post(_: int) -> httpx.Response:
        barrier.wait(timeout=30)
        if transport == "testclient":
            return client.post("/v1/jobs", headers=headers, json=body)
        return httpx.post(f"http://{host}:{port}/v1/jobs", headers=headers, json=body, timeout=30)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, range(20)))
    codes = [a.status_code for a in answers]
    assert all(c in (201, 409) for c in codes), [a.text for a in answers if a.status_code not in (201, 409)]
    created = {a.json()["id"] for a in answers if a.status_code == 201}
    assert len(created) == 1, created
    assert all(a.json()["error"]["code"] == "idempotency_in_progress" for a in answers if a.status_code == 409)
    jobs = client.get("/v1/jobs", headers=auth).json()["data"]
    assert [j["id"] for j in jobs] == list(created)
    again = client.post("/v1/jobs", headers=headers, json=body)  # and afterwards, a plain replay
    assert again.status_code == 201 and again.json()["id"] in created


def test_ten_simultaneous_identical_uploads_make_one_dataset(client, make_key, tmp_path):
    from tests.security.conftest import assert_nothing_left

    auth = make_key(("write",))
    path = write_zip(tmp_path / "ds.zip", dataset_members(classes=2, per_class=3, size=8))
    barrier = threading.Barrier(10)

    def post(_: int) -> httpx.Response:
        barrier.wait(timeout=30)
        return upload(client, auth, path, **{"Idempotency-Key": "same-upload"})

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(post, range(10)))
    assert all(a.status_code in (201, 409) for a in answers), [a.text for a in answers]
    created = {a.json()["id"] for a in answers if a.status_code == 201}
    assert len(created) == 1
    assert [d["id"] for d in client.get("/v1/datasets", headers=auth).json()["data"]] == list(created)
    assert_nothing_left()
