"""Artifact downloads: the sha256 as a strong ETag, If-None-Match → 304, Range → 206 (Starlette's FileResponse
does the ranges in the installed version; these tests hold it to that), by model id and by alias."""

import hashlib
import secrets

import pytest

from tests.api.model_factory import make_model

DATA = bytes(range(256)) * 40  # 10240 bytes, every offset recognisable


@pytest.fixture
def model(make_key) -> tuple[str, dict[str, str]]:  # noqa: ANN001
    tenant = f"t{secrets.token_hex(4)}"
    return make_model(tenant, safetensors=DATA), make_key(("read",), tenant=tenant)


def url(model_id: str) -> str:
    return f"/v1/models/{model_id}/artifacts/safetensors"


def test_full_download_carries_the_sha256_as_strong_etag(client, model):
    model_id, auth = model
    resp = client.get(url(model_id), headers=auth)
    sha = hashlib.sha256(DATA).hexdigest()
    assert resp.status_code == 200 and resp.content == DATA
    assert resp.headers["etag"] == f'"{sha}"' and resp.headers["x-checksum-sha256"] == sha
    assert resp.headers["accept-ranges"] == "bytes" and resp.headers["content-length"] == str(len(DATA))
    assert resp.headers["cache-control"] == "private, no-cache"
    assert f"{model_id}.safetensors" in resp.headers["content-disposition"]


@pytest.mark.parametrize("header", ['"{sha}"', 'W/"{sha}"', '"other", "{sha}"', "*"])
def test_if_none_match_answers_304_without_a_body(client, model, header):
    model_id, auth = model
    sha = hashlib.sha256(DATA).hexdigest()
    resp = client.get(url(model_id), headers={**auth, "If-None-Match": header.format(sha=sha)})
    assert resp.status_code == 304 and resp.content == b""
    assert resp.headers["etag"] == f'"{sha}"'


def test_a_stale_etag_gets_the_file(client, model):
    model_id, auth = model
    resp = client.get(url(model_id), headers={**auth, "If-None-Match": '"' + "0" * 64 + '"'})
    assert resp.status_code == 200 and resp.content == DATA


@pytest.mark.parametrize("spec,start,end", [("bytes=0-99", 0, 100), ("bytes=10000-", 10000, len(DATA)),
                                            ("bytes=-240", len(DATA) - 240, len(DATA)),
                                            ("bytes=5000-999999", 5000, len(DATA))])
def test_a_single_range_answers_206(client, model, spec, start, end):
    model_id, auth = model
    resp = client.get(url(model_id), headers={**auth, "Range": spec})
    assert resp.status_code == 206, resp.text
    assert resp.content == DATA[start:end]
    assert resp.headers["content-range"] == f"bytes {start}-{end - 1}/{len(DATA)}"
    assert resp.headers["etag"] == f'"{hashlib.sha256(DATA).hexdigest()}"'


def test_resuming_a_download_gives_the_same_bytes(client, model):
    model_id, auth = model
    head = client.get(url(model_id), headers={**auth, "Range": "bytes=0-4095"})
    etag = head.headers["etag"]
    tail = client.get(url(model_id), headers={**auth, "Range": "bytes=4096-", "If-Range": etag})
    assert tail.status_code == 206
    assert hashlib.sha256(head.content + tail.content).hexdigest() == etag.strip('"')


def test_if_range_with_another_etag_sends_the_whole_file(client, model):
    model_id, auth = model
    resp = client.get(url(model_id), headers={**auth, "Range": "bytes=4096-", "If-Range": '"' + "0" * 64 + '"'})
    assert resp.status_code == 200 and resp.content == DATA


def test_several_ranges_come_as_multipart_byteranges(client, model):
    model_id, auth = model
    resp = client.get(url(model_id), headers={**auth, "Range": "bytes=0-9,100-109"})
    assert resp.status_code == 206
    assert resp.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert DATA[0:10] in resp.content and DATA[100:110] in resp.content


def test_a_range_beyond_the_end_is_416_in_the_error_body(client, model):
    model_id, auth = model
    resp = client.get(url(model_id), headers={**auth, "Range": f"bytes={len(DATA)}-"})
    assert resp.status_code == 416
    assert resp.json()["error"]["code"] == "range_not_satisfiable"
    assert resp.headers["content-range"] == f"bytes */{len(DATA)}"


@pytest.mark.parametrize("spec", ["bytes=abc", "pages=1-2", "bytes=9-3", "nonsense"])
def test_an_unparseable_range_is_ignored(client, model, spec):
    model_id, auth = model
    resp = client.get(url(model_id), headers={**auth, "Range": spec})
    assert resp.status_code == 200 and resp.content == DATA


def test_by_alias_the_etag_changes_when_the_alias_moves(client, make_key):
    tenant = f"t{secrets.token_hex(4)}"
    auth = make_key(("write",), tenant=tenant)
    first, second = make_model(tenant, safetensors=DATA), make_model(tenant, safetensors=DATA[::-1])
    client.put("/v1/aliases/prod", headers=auth, json={"model_id": first})
    resp = client.get("/v1/aliases/prod/artifacts/safetensors", headers=auth)
    assert resp.status_code == 200 and resp.content == DATA
    etag = resp.headers["etag"]
    assert client.get("/v1/aliases/prod/artifacts/safetensors",
                      headers={**auth, "If-None-Match": etag}).status_code == 304
    client.put("/v1/aliases/prod", headers=auth, json={"model_id": second})
    moved = client.get("/v1/aliases/prod/artifacts/safetensors", headers={**auth, "If-None-Match": etag})
    assert moved.status_code == 200 and moved.content == DATA[::-1] and moved.headers["etag"] != etag
    part = client.get("/v1/aliases/prod/artifacts/safetensors", headers={**auth, "Range": "bytes=0-0"})
    assert part.status_code == 206 and part.content == DATA[-1:]
    missing = client.get("/v1/aliases/prod/artifacts/onnx", headers=auth)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "artifact_not_found"
