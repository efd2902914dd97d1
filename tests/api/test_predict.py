"""Predictions through the API on a tiny real ONNX classifier: answers, limits, refusals, the session cache."""

import io
import random
import secrets
import threading

import pytest
from PIL import Image

from tests.api.model_factory import colour_onnx, make_model
from tests.factories import COLOURS, image_bytes

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    return colour_onnx()


@pytest.fixture
def served(make_key, onnx_bytes) -> tuple[str, dict[str, str]]:  # noqa: ANN001
    tenant = f"t{secrets.token_hex(4)}"
    return make_model(tenant, onnx=onnx_bytes), make_key(("read",), tenant=tenant)


def png(colour: str, size: int = 12, seed: int = 0) -> bytes:
    return image_bytes(COLOURS[colour], size, random.Random(seed))


def files(*items: tuple[str, bytes]) -> list:
    return [("files", (name, data, "image/png")) for name, data in items]


def test_top_k_per_image_in_upload_order(client, served):
    model_id, auth = served
    resp = client.post(f"/v1/models/{model_id}/predict?top_k=2", headers=auth,
                       files=files(("b.png", png("blue")), ("r.png", png("red", 20)), ("g.png", png("green", 9))))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_id"] == model_id and len(body["onnx_sha256"]) == 64
    assert [d["file"] for d in body["data"]] == ["b.png", "r.png", "g.png"]
    assert [d["predictions"][0]["label"] for d in body["data"]] == ["blue", "red", "green"]
    for d in body["data"]:
        probs = [p["probability"] for p in d["predictions"]]
        assert len(probs) == 2 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-9
    everything = client.post(f"/v1/models/{model_id}/predict?top_k=50", headers=auth,
                             files=files(("x.png", png("red")))).json()["data"][0]["predictions"]
    assert len(everything) == 3 and abs(sum(p["probability"] for p in everything) - 1) < 1e-9


def test_jpeg_rgba_grayscale_and_exif_rotated_images_are_read(client, served):
    model_id, auth = served

    def encode(image: Image.Image, fmt: str, **kw) -> bytes:  # noqa: ANN003
        buf = io.BytesIO()
        image.save(buf, format=fmt, **kw)
        return buf.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: serving must turn it upright, as training did
    red = Image.new("RGB", (16, 10), COLOURS["red"])
    resp = client.post(f"/v1/models/{model_id}/predict", headers=auth, files=files(
        ("a.jpg", encode(red, "JPEG")), ("b.png", encode(Image.new("RGBA", (9, 9), (30, 40, 220, 10)), "PNG")),
        ("c.png", encode(Image.new("L", (9, 9), 200), "PNG")), ("d.jpg", encode(red, "JPEG", exif=exif)),
        ("e.webp", encode(Image.new("RGB", (9, 9), COLOURS["green"]), "WEBP"))))
    assert resp.status_code == 200, resp.text
    assert [d["predictions"][0]["label"] for d in resp.json()["data"]][:2] == ["red", "blue"]
    assert resp.json()["data"][4]["predictions"][0]["label"] == "green"


def test_a_model_without_onnx_is_409(client, make_key):
    tenant = f"t{secrets.token_hex(4)}"
    model_id, auth = make_model(tenant), make_key(("read",), tenant=tenant)
    resp = client.post(f"/v1/models/{model_id}/predict", headers=auth, files=files(("r.png", png("red"))))
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "onnx_unavailable"


def test_another_tenants_model_is_404(client, served, make_key):
    model_id, _ = served
    resp = client.post(f"/v1/models/{model_id}/predict", headers=make_key(("read",)),
                       files=files(("r.png", png("red"))))
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("data", [b"", b"not an image", png("red")[:40], b"GIF89a" + b"\0" * 30])
def test_an_unreadable_image_is_422_naming_the_file(client, served, data):
    model_id, auth = served
    resp = client.post(f"/v1/models/{model_id}/predict", headers=auth,
                       files=files(("ok.png", png("red")), ("broken.png", data)))
    assert resp.status_code == 422, resp.text
    err = resp.json()["error"]
    assert err["code"] == "bad_image" and err["details"] == {"file": "broken.png"} and "broken.png" in err["message"]


def test_too_many_pixels_is_refused_before_decoding(client, served, monkeypatch):
    from app.config import get_settings

    model_id, auth = served
    monkeypatch.setattr(get_settings(), "max_image_pixels", 100)
    resp = client.post(f"/v1/models/{model_id}/predict", headers=auth, files=files(("big.png", png("red", 11))))
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "bad_image"
    assert "pixel limit" in resp.json()["error"]["message"]


def test_too_many_images_is_413(client, served, monkeypatch):
    from app.config import get_settings

    model_id, auth = served
    monkeypatch.setattr(get_settings(), "predict_max_images", 2)
    ok = client.post(f"/v1/models/{model_id}/predict", headers=auth, files=files(*[("r.png", png("red"))] * 2))
    assert ok.status_code == 200
    resp = client.post(f"/v1/models/{model_id}/predict", headers=auth, files=files(*[("r.png", png("red"))] * 3))
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "too_many_images"


def test_the_byte_cap_by_content_length_and_mid_stream(client, served, monkeypatch):
    from app.config import get_settings

    model_id, auth = served
    monkeypatch.setattr(get_settings(), "predict_max_bytes", 4096)
    big = files(("r.png", png("red", 64)))  # well over 4 KiB of noisy PNG
    resp = client.post(f"/v1/models/{model_id}/predict", headers=auth, files=big)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "upload_too_large"



def test_the_byte_cap_bites_mid_stream():
    import anyio
    from starlette.requests import Request

    from app.errors import TooLarge
    from app.serving.upload import receive_images

    received = []

    async def receive() -> dict:  # a chunked body without Content-Length: only counting can stop it
        received.append(1)
        if len(received) == 1:
            head = b'--b\r\nContent-Disposition: form-data; name="files"; filename="r.png"\r\n\r\n'
            return {"type": "http.request", "body": head, "more_body": True}
        return {"type": "http.request", "body": b"\0" * 1024, "more_body": len(received) < 1000}

    request = Request({"type": "http", "method": "POST", "path": "/", "query_string": b"",
                       "headers": [(b"content-type", b"multipart/form-data; boundary=b")]}, receive)

    async def main() -> None:
        with pytest.raises(TooLarge):
            await receive_images(request, max_images=4, max_bytes=4096)

    anyio.run(main)
    assert len(received) <= 6, "the body was read on past the cap"


@pytest.mark.parametrize("kwargs,code", [
    ({"json": {"files": []}}, "invalid_upload"),
    ({"files": [("other", ("r.png", b"x", "image/png"))]}, "invalid_upload"),
    ({"content": b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"r.png\"\r\n\r\nabc",
      "headers": {"Content-Type": "multipart/form-data; boundary=b"}}, "invalid_upload"),
])
def test_malformed_requests_are_422(client, served, kwargs, code):
    model_id, auth = served
    headers = {**auth, **kwargs.pop("headers", {})}
    resp = client.post(f"/v1/models/{model_id}/predict", headers=headers, **kwargs)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == code


def test_top_k_is_bounded(client, served):
    model_id, auth = served
    for k in (0, 101):
        resp = client.post(f"/v1/models/{model_id}/predict?top_k={k}", headers=auth, files=files(("r.png", png("red"))))
        assert resp.status_code == 422 and resp.json()["error"]["code"] == "validation_error"


def test_predict_by_alias(client, make_key, onnx_bytes):
    tenant = f"t{secrets.token_hex(4)}"
    auth = make_key(("write",), tenant=tenant)
    model_id = make_model(tenant, onnx=onnx_bytes)
    client.put("/v1/aliases/prod", headers=auth, json={"model_id": model_id})
    resp = client.post("/v1/aliases/prod/predict?top_k=1", headers=auth, files=files(("g.png", png("green"))))
    assert resp.status_code == 200 and resp.json()["model_id"] == model_id
    assert resp.json()["data"][0]["predictions"][0]["label"] == "green"
    assert client.post("/v1/aliases/nope/predict", headers=auth,
                       files=files(("g.png", png("green")))).json()["error"]["code"] == "alias_not_found"


def test_sessions_are_cached_by_sha256_and_evicted_least_recently_used(tmp_path, onnx_bytes):
    import hashlib

    from app.serving.runtime import SessionCache

    paths = {}
    for classes in (2, 3, 4):
        data = colour_onnx(classes=classes)
        path = tmp_path / f"{classes}.onnx"
        path.write_bytes(data)
        paths[hashlib.sha256(data).hexdigest()] = path
    (a, pa), (b, pb), (c, pc) = paths.items()
    cache = SessionCache(size=2, threads=1)
    first = cache.get(a, pa)
    assert cache.get(a, pa) is first
    cache.get(b, pb)
    cache.get(a, pa)  # a is now the most recent
    cache.get(c, pc)  # evicts b
    assert cache.get(a, pa) is first and len(cache) == 2
    with pytest.raises(RuntimeError, match="does not hash"):
        cache.get("0" * 64, pa)
    assert len(cache) == 2  # a failed load is not cached


def test_a_full_pool_refuses_at_once():
    from app.serving.runtime import Runtime, ServerBusy

    runtime = Runtime(workers=1, queue=1, cache_size=1, threads=1)
    release = threading.Event()
    running = [runtime.submit(release.wait, 10), runtime.submit(release.wait, 10)]
    with pytest.raises(ServerBusy):
        runtime.submit(lambda: None)
    release.set()
    assert all(f.result(timeout=10) for f in running)
    assert runtime.submit(lambda: 42).result(timeout=10) == 42  # the slots came back
    runtime.pool.shutdown()
