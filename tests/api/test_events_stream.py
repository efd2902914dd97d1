"""GET /v1/jobs/{id}/events as Server-Sent Events: ids, resumption after Last-Event-ID, keep-alives, the end."""

import json
import threading
import time

import pytest
from httpx_sse import connect_sse

WORKER = {"Authorization": "Bearer test-worker-token"}
METRICS = {"train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4}
SSE = {"Accept": "text/event-stream"}


def _job(client, auth, ds_id: str) -> tuple[str, int]:  # noqa: ANN001
    spec = {"dataset_id": ds_id, "base_model": {"arch": "resnet18", "weights": "none"},
            "hyperparameters": {"epochs": 3, "image_size": 32}}
    job_id = client.post("/v1/jobs", headers=auth, json=spec).json()["id"]
    claim = client.post(f"/internal/jobs/{job_id}/claim", headers=WORKER, json={"worker": "w"})
    assert claim.status_code == 200, claim.text
    return job_id, claim.json()["attempt"]


def _drive(client, job_id: str, attempt: int, pause: float = 0.0) -> None:  # noqa: ANN001
    """Two epochs, a message, then a failure: every kind of event."""
    base = f"/internal/jobs/{job_id}"
    for epoch in (1, 2):
        time.sleep(pause)
        r = client.post(f"{base}/metrics", headers=WORKER, json={"attempt": attempt, "epoch": epoch,
                                                                 "metrics": METRICS})
        assert r.status_code == 200, r.text
    client.post(f"{base}/events", headers=WORKER, json={"attempt": attempt, "key": "note", "message": "hello"})
    time.sleep(pause)
    r = client.post(f"{base}/fail", headers=WORKER, json={"attempt": attempt, "message": "boom"})
    assert r.status_code == 200, r.text


def _stream(client, auth, job_id: str, query: str = "", **headers: str) -> list:  # noqa: ANN001
    url = f"/v1/jobs/{job_id}/events{query}"
    with connect_sse(client, "GET", url, headers={**auth, **headers}) as source:
        assert source.response.status_code == 200, source.response.read()
        return list(source.iter_sse())


def test_stream_matches_the_json_list_and_resumes_after_last_event_id(client, auth, ready_dataset):
    job_id, attempt = _job(client, auth, ready_dataset["id"])
    _drive(client, job_id, attempt)
    listed = client.get(f"/v1/jobs/{job_id}/events", headers=auth).json()["data"]
    n = len(listed)
    assert [e["type"] for e in listed] == ["status", "status", "metrics", "metrics", "message", "status"]

    everything = _stream(client, auth, job_id)
    assert [int(e.id) for e in everything] == list(range(1, n + 1))
    assert [e.event for e in everything] == [e["type"] for e in listed]
    assert [e.json() for e in everything] == listed  # data is exactly the JSON list's item
    for k in range(n):  # a reconnect after any event gets exactly the rest
        rest = _stream(client, auth, job_id, **{"Last-Event-ID": str(k)})
        assert [int(e.id) for e in rest] == list(range(k + 1, n + 1))
    # after_seq does the same; Last-Event-ID (what an EventSource sends on reconnecting) wins over it.
    assert [int(e.id) for e in _stream(client, auth, job_id, "?after_seq=4")] == [5, 6]
    assert [int(e.id) for e in _stream(client, auth, job_id, "?after_seq=1", **{"Last-Event-ID": "4"})] == [5, 6]
    # A finished job with nothing left to send: 204, which tells an EventSource to stop reconnecting.
    done = client.get(f"/v1/jobs/{job_id}/events", headers={**auth, **SSE, "Last-Event-ID": str(n)})
    assert done.status_code == 204 and done.content == b""
    bad = client.get(f"/v1/jobs/{job_id}/events", headers={**auth, **SSE, "Last-Event-ID": "x"})
    assert bad.status_code == 422


@pytest.fixture
def fast_stream():
    """Poll often and ping every 50 ms, for this test only."""
    from app.config import get_settings

    s = get_settings()
    saved = s.events_poll_seconds, s.events_ping_seconds
    s.events_poll_seconds, s.events_ping_seconds = 0.02, 0.05
    yield
    s.events_poll_seconds, s.events_ping_seconds = saved


def test_stream_is_live_sends_keepalives_and_ends_with_the_job(client, auth, ready_dataset, fast_stream):
    job_id, attempt = _job(client, auth, ready_dataset["id"])
    driver = threading.Thread(target=_drive, args=(client, job_id, attempt, 0.25))
    driver.start()
    try:
        started = time.monotonic()
        resp = client.get(f"/v1/jobs/{job_id}/events", headers={**auth, **SSE, "Last-Event-ID": "1"})
        elapsed = time.monotonic() - started
    finally:
        driver.join()
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    assert elapsed > 0.5  # it waited for the job rather than answering with what was there
    assert ": ping" in resp.text  # keep-alive comments while the job was quiet
    ids = [int(line[3:]) for line in resp.text.splitlines() if line.startswith("id:")]
    assert ids == [2, 3, 4, 5, 6]
    last = [json.loads(line[5:]) for line in resp.text.splitlines() if line.startswith("data:")][-1]
    assert last["type"] == "status" and last["data"]["to"] == "failed"


def test_stream_is_checked_like_the_json_route(client, auth, make_key, ready_dataset):
    job_id, _ = _job(client, auth, ready_dataset["id"])
    other = make_key(scopes=("read",))
    for headers in (other, {}):
        resp = client.get(f"/v1/jobs/{job_id}/events", headers={**headers, **SSE})
        assert resp.status_code in (401, 404) and resp.headers["content-type"] == "application/json"
    assert client.get(f"/v1/jobs/{job_id}/events", headers={**other, **SSE}).json()["error"]["code"] == \
        "job_not_found"
    assert client.get("/v1/jobs/job_nothere/events", headers={**auth, **SSE}).status_code == 404
    # Without the Accept header it is the JSON page, as before.
    page = client.get(f"/v1/jobs/{job_id}/events", headers=auth)
    assert page.headers["content-type"] == "application/json" and page.json()["has_more"] is False
