"""Keys: created by admins, stored hashed, revocable; secrets never come back."""

from app.db import get_sessionmaker
from app.models import ApiKey


def test_admin_creates_lists_and_revokes_keys(client, make_key):
    admin = make_key(("admin",))
    created = client.post("/v1/keys", headers=admin, json={"scopes": ["write"], "name": "ci"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["key"].startswith(f"taas_{body['prefix']}_") and body["scopes"] == ["read", "write"]
    new = {"Authorization": f"Bearer {body['key']}"}
    assert client.get("/v1/datasets", headers=new).status_code == 200
    listed = client.get("/v1/keys", headers=admin).json()["data"]
    assert body["id"] in {k["id"] for k in listed} and all("key" not in k and "hmac" not in k for k in listed)
    with get_sessionmaker()() as s:
        row = s.get(ApiKey, body["id"])
        assert body["key"] not in (row.hmac, row.prefix) and len(row.hmac) == 64
    assert client.delete(f"/v1/keys/{body['id']}", headers=admin).status_code == 204
    assert client.get("/v1/datasets", headers=new).status_code == 401
    assert client.delete(f"/v1/keys/{body['id']}", headers=make_key(("admin",))).status_code == 404


def test_bad_scopes_and_tampered_keys_are_refused(client, make_key):
    admin = make_key(("admin",))
    resp = client.post("/v1/keys", headers=admin, json={"scopes": ["root"]})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_scopes"
    key = client.post("/v1/keys", headers=admin, json={"scopes": ["read"]}).json()["key"]
    tampered = key[:-2] + ("AA" if not key.endswith("AA") else "BB")
    assert client.get("/v1/datasets", headers={"Authorization": f"Bearer {tampered}"}).status_code == 401
    assert client.get("/v1/datasets", headers={"Authorization": "Basic abc"}).status_code == 401
