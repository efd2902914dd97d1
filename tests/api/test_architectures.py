"""GET /v1/architectures: the catalogue as clients (the dashboard's job form) read it."""

from core import catalog


def test_needs_a_key(client):
    resp = client.get("/v1/architectures")
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "missing_api_key"


def test_lists_every_catalogue_entry_with_its_block_groups(client, make_key):
    resp = client.get("/v1/architectures", headers=make_key(("read",)))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["has_more"] is False
    by_name = {a["name"]: a for a in body["data"]}
    assert list(by_name) == catalog.arch_names()
    assert {"resnet18", "efficientnet_lite0"} <= set(by_name)
    r18 = by_name["resnet18"]
    assert r18["family"] == "resnet"
    assert r18["block_groups"] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert r18["total_params"] == catalog.get_arch("resnet18")["total_params"] > 10_000_000
    assert by_name["efficientnet_lite0"]["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert set(r18) == {"name", "family", "block_groups", "total_params", "preprocessing"}  # no weight tables


def test_is_documented(client):
    op = client.app.openapi()["paths"]["/v1/architectures"]["get"]
    assert op["summary"] and {"401", "403"} <= set(op["responses"])
    assert "/" not in client.app.openapi()["paths"]  # the dashboard's page is not part of the API
