"""Every route that streams its own body reads it through one reader (app/bodies.py), so a hostile content type or
an out-of-range number gets the same 4xx on each of them; found by schemathesis over HTTP, fixed as a class."""

import secrets

import pytest

from tests.api.model_factory import colour_onnx, make_model
from tests.security.conftest import WORKER, assert_nothing_left
from tests.security.helpers import file_part, multipart

pytest.importorskip("onnx")

BAD_CONTENT_TYPES = {
    "no-boundary": "multipart/form-data",
    "empty-boundary": "multipart/form-data; boundary=",
    "quoted-empty-boundary": 'multipart/form-data; boundary=""',
    "boundary-too-long": "multipart/form-data; boundary=" + "x" * 71,
    "other-parameter-only": "multipart/form-data; charset=utf-8",
    "suffixed-type": "multipart/form-dataX; boundary=b",
    "mixed": "multipart/mixed; boundary=b",
    "text": "text/plain",
}


@pytest.fixture(scope="module")
def streamed(client) -> tuple[dict[str, str], dict[str, str]]:  # noqa: ANN001
    """A key and, by name, the path of every public route that streams its body itself."""
    from app.db import get_sessionmaker
    from app.keys.service import create_key

    tenant = f"t{secrets.token_hex(4)}"
    with get_sessionmaker()() as session:
        _, key = create_key(session=session, tenant=tenant, scopes=["admin"])
    auth = {"Authorization": f"Bearer {key}"}
    model_id = make_model(tenant, onnx=colour_onnx())
    assert client.put("/v1/aliases/prod", headers=auth, json={"model_id": model_id}).status_code == 201
    return auth, {"dataset upload": "/v1/datasets", "base model upload": "/v1/base-models",
                  "model predict": f"/v1/models/{model_id}/predict", "alias predict": "/v1/aliases/prod/predict"}


@pytest.mark.parametrize("route", ["dataset upload", "base model upload", "model predict", "alias predict"])
@pytest.mark.parametrize("ctype", list(BAD_CONTENT_TYPES))
def test_a_malformed_content_type_is_422_on_every_streamed_route(client, streamed, route, ctype):
    auth, paths = streamed
    body = multipart(file_part(b"PK\x03\x04 not really", field="files" if "predict" in route else "file"))
    resp = client.post(paths[route], headers={**auth, "Content-Type": BAD_CONTENT_TYPES[ctype]}, content=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "invalid_upload"
    assert_nothing_left()


@pytest.mark.parametrize("route", ["dataset upload", "base model upload", "model predict", "alias predict"])
def test_a_truncated_multipart_body_is_422_on_every_streamed_route(client, streamed, route):
    auth, paths = streamed
    field = "files" if "predict" in route else "file"
    body = b"--b\r\n" + file_part(b"\x89PNG" + b"\0" * 300, field=field)[:-50]
    resp = client.post(paths[route], headers={**auth, "Content-Type": "multipart/form-data; boundary=b"}, content=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "invalid_upload"
    assert_nothing_left()


HUGE = "57880272688736354304"  # what schemathesis sent: past every integer column


@pytest.mark.parametrize("path,headers", [
    (f"/v1/aliases/prod/history?before={HUGE}", {}),
    (f"/v1/aliases/prod/history?before={2**31}", {}),
    (f"/v1/jobs/job_x/events?after_seq={HUGE}", {}),
    ("/v1/jobs/job_x/events", {"Last-Event-ID": HUGE}),
    (f"/v1/jobs/job_x/events?after_seq={2**31}", {"Accept": "text/event-stream"}),
])
def test_an_out_of_range_integer_is_422_not_a_driver_error(client, streamed, path, headers):
    auth, _ = streamed
    resp = client.get(path, headers={**auth, **headers})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "validation_error"


def test_the_largest_integer_in_range_is_answered(client, streamed):
    auth, _ = streamed
    resp = client.get(f"/v1/aliases/prod/history?before={2**31 - 1}", headers=auth)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["data"]) == 1


@pytest.mark.parametrize("path", [
    f"/internal/jobs/job_x/checkpoint?attempt={HUGE}&epoch=1",
    f"/internal/jobs/job_x/checkpoint?attempt=1&epoch={2**31}",
    f"/internal/jobs/job_x/artifacts/onnx?attempt={HUGE}",
])
def test_internal_streamed_routes_bound_their_integers(client, path):
    resp = client.put(path, headers=WORKER, content=b"x" * 10)
    assert resp.status_code == 422, resp.text
    assert_nothing_left()


@pytest.mark.parametrize("route", ["heartbeat", "metrics", "release"])
def test_internal_json_bodies_bound_their_integers(client, route):
    body = {"attempt": int(HUGE), "epoch": 1, "metrics": {}}
    resp = client.post(f"/internal/jobs/job_x/{route}", headers=WORKER, json=body)
    assert resp.status_code == 422, resp.text


def test_stream_body_hands_bytes_over_in_order_and_in_batches():
    """The reader's sink sees every byte once, in order, in few calls (one per MiB, not one per socket read)."""
    import anyio
    from starlette.requests import Request

    from app import bodies

    chunks = [secrets.token_bytes(65536) for _ in range(40)]  # 2.5 MiB in socket-sized pieces
    it = iter(chunks)

    async def receive() -> dict:
        chunk = next(it, b"")
        return {"type": "http.request", "body": chunk, "more_body": bool(chunk)}

    request = Request({"type": "http", "method": "PUT", "path": "/", "query_string": b"", "headers": []}, receive)
    seen: list[bytes] = []

    async def main() -> int:
        return await bodies.stream_body(request, seen.append, cap=10 * 1024**2)

    assert anyio.run(main) == sum(map(len, chunks))
    assert b"".join(seen) == b"".join(chunks)
    assert len(seen) == 3  # two full MiB batches and the remainder
