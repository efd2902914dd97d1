"""client.sdk against scripted transports: stream resumption, checksums, uploads, predictions."""

import hashlib
import json

import httpx
import pytest
from typer.testing import CliRunner

from client.sdk import APIError, ChecksumMismatch, Client, StreamLost


def _sse(*events: tuple[int, str, dict]) -> bytes:
    return b"".join(f"id: {seq}\nevent: {type_}\ndata: {json.dumps({'seq': seq, 'type': type_, 'data': data})}\n\n"
                    .encode() for seq, type_, data in events) + b": ping\n\n"


def _client(handler) -> Client:  # noqa: ANN001
    return Client("http://taas", "taas_k_s", http=httpx.Client(base_url="http://taas",
                                                                 transport=httpx.MockTransport(handler)),
                  reconnect_delay=0.001, max_reconnects=3)


class Dropping(httpx.SyncByteStream):
    """A body that delivers some bytes and then loses the connection."""

    def __init__(self, body: bytes):
        self.body = body

    def __iter__(self):
        yield self.body
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


def test_watch_resumes_after_last_event_id_until_the_terminal_event():
    seen: list[str | None] = []
    first = _sse((1, "status", {"to": "queued"}), (2, "status", {"to": "running"}))
    script = [
        lambda: httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Dropping(first)),
        lambda: httpx.ConnectError("refused"),  # the API restarts
        lambda: httpx.Response(200, headers={"content-type": "text/event-stream"},  # closed cleanly, not the end
                               content=_sse((3, "metrics", {"epoch": 1}))),
        lambda: httpx.Response(200, headers={"content-type": "text/event-stream"},
                               content=_sse((4, "metrics", {"epoch": 2}), (5, "status", {"to": "failed"}))),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept"] == "text/event-stream"
        assert request.headers["authorization"] == "Bearer taas_k_s"
        seen.append(request.headers.get("last-event-id"))
        answer = script.pop(0)()
        if isinstance(answer, Exception):
            raise answer
        return answer

    events = list(_client(handler).jobs.watch("job_1"))
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]  # no gap, no repeat
    assert seen == [None, "2", "2", "3"]


def test_watch_ends_on_204_and_gives_up_after_max_reconnects():
    assert list(_client(lambda r: httpx.Response(204)).jobs.watch("job_1", after_seq=9)) == []

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(StreamLost, match="after 4 tries"):
        list(_client(refuse).jobs.watch("job_1"))
    missing = httpx.Response(404, json={"error": {"code": "job_not_found", "message": "job job_1 not found"}})
    with pytest.raises(APIError) as err:
        list(_client(lambda r: missing).jobs.watch("job_1"))
    assert err.value.status == 404 and err.value.code == "job_not_found"


def test_download_refuses_a_wrong_checksum_and_leaves_nothing(tmp_path):
    body = b"x" * 300_000
    good = hashlib.sha256(body).hexdigest()

    def handler(sha: str):  # noqa: ANN202
        return lambda r: httpx.Response(200, content=body, headers={"x-checksum-sha256": sha})

    dest = tmp_path / "m.safetensors"
    with pytest.raises(ChecksumMismatch):
        _client(handler("0" * 64)).models.download("model_1", "safetensors", dest)
    assert list(tmp_path.iterdir()) == []
    progress: list[tuple[int, int | None]] = []
    sha = _client(handler(good)).models.download("model_1", "safetensors", dest,
                                                 progress=lambda d, t: progress.append((d, t)))
    assert sha == good and dest.read_bytes() == body and progress[-1] == (len(body), len(body))


def test_upload_streams_the_file_and_reports_progress(tmp_path):
    path = tmp_path / "big.zip"
    path.write_bytes(b"z" * 200_000)
    received = {}

    def handler(request: httpx.Request) -> httpx.Response:
        received["body"] = request.read()
        received["key"] = request.headers.get("idempotency-key")
        return httpx.Response(201, json={"id": "ds_1", "status": "processing"})

    progress: list[int] = []
    ds = _client(handler).datasets.upload(path, progress=lambda done, total: progress.append(done),
                                          idempotency_key="up-1")
    assert ds["id"] == "ds_1" and received["key"] == "up-1"
    assert b'name="file"; filename="big.zip"' in received["body"] and b'name="name"' in received["body"]
    assert len(progress) >= 3 and progress[-1] == 200_000 and progress == sorted(progress)  # in 64 KiB reads


def test_predict_sends_each_image_as_a_files_part_and_prints_the_top_labels(tmp_path, monkeypatch):
    import client.commands as commands
    from client.cli import cli

    images = [tmp_path / "a.png", tmp_path / "b.jpg"]
    for p in images:
        p.write_bytes(b"img-" + p.name.encode())

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/aliases/production":
            return httpx.Response(200, json={"name": "production", "model_id": "model_1"})
        assert request.url.path == "/v1/models/model_1/predict" and request.url.params["top_k"] == "2"
        body = request.read()
        assert body.count(b'name="files"') == 2 and b"img-a.png" in body and b"Content-Type: image/jpeg" in body
        top = [{"label": "cat", "probability": 0.9}, {"label": "dog", "probability": 0.1}]
        return httpx.Response(200, json={"model_id": "model_1", "onnx_sha256": "ab",
                                         "data": [{"file": p.name, "predictions": top} for p in images]})

    monkeypatch.setattr(commands, "Client", lambda url, key: _client(handler))
    res = CliRunner().invoke(cli, ["predict", "production", *map(str, images), "--top-k", "2"],
                             env={"TAAS_API_KEY": "k", "COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stdout.splitlines() if "0.9000" in line or "0.1000" in line]
    assert len(lines) == 4 and "a.png" in lines[0] and "cat" in lines[0] and "b.jpg" in lines[2]


def test_an_unreachable_api_is_one_line_and_exit_1():
    from client.cli import cli

    res = CliRunner().invoke(cli, ["models", "ls", "--api-url", "http://127.0.0.1:9", "--api-key", "k"])
    assert res.exit_code == 1 and res.stderr.startswith("error cannot reach the API at http://127.0.0.1:9")
