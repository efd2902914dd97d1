"""A whole job followed live through a real SSE client (httpx-sse), disconnecting and resuming halfway."""

import httpx
from httpx_sse import connect_sse

from tests.factories import dataset_members, write_zip
from tests.procs import poll


def _ready_dataset(http: httpx.Client, tmp_path) -> str:  # noqa: ANN001
    path = write_zip(tmp_path / "tiny.zip", dataset_members(classes=2, per_class=6, size=8))
    with open(path, "rb") as f:
        ds = http.post("/v1/datasets", files={"file": ("tiny.zip", f)}).json()
    poll(lambda: http.get(f"/v1/datasets/{ds['id']}").json()["status"] == "ready", 60, "dataset ready")
    return ds["id"]


def _read(source, into: list, stop_after: str | None = None) -> None:  # noqa: ANN001
    for sse in source.iter_sse():
        if not sse.data:  # a keep-alive comment
            continue
        into.append((int(sse.id), sse.event, sse.json()))
        if sse.event == stop_after:
            return


def test_follow_a_job_live_and_resume_after_last_event_id_without_gaps_or_repeats(stack, tmp_path):
    http = stack.client()
    spec = {"dataset_id": _ready_dataset(http, tmp_path), "base_model": {"arch": "resnet18", "weights": "none"},
            "freeze": {"policy": "none"}, "hyperparameters": {"epochs": 3, "image_size": 16}}
    job_id = http.post("/v1/jobs", json=spec).json()["id"]
    url = f"/v1/jobs/{job_id}/events"
    got: list[tuple[int, str, dict]] = []
    with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=httpx.Timeout(30, read=120)) as sse:
        with connect_sse(sse, "GET", url) as source:
            assert source.response.status_code == 200
            assert source.response.headers["content-type"].startswith("text/event-stream")
            _read(source, got, stop_after="metrics")  # then hang up, mid-job
        assert got[-1][1] == "metrics" and got[-1][2]["data"]["epoch"] == 1
        with connect_sse(sse, "GET", url, headers={"Last-Event-ID": str(got[-1][0])}) as source:
            _read(source, got)  # until the server closes the stream: the job has finished
        # The ONNX export's message follows the job's end (the export runs after succeed), so it may arrive after
        # the stream closed: wait until it is recorded, then a reconnection brings whatever the stream missed.
        poll(lambda: "onnx" in (http.get(url, params={"limit": 1000}).json()["data"][-1]["message"] or ""), 60,
             "the ONNX export's message")
        with connect_sse(sse, "GET", url, headers={"Last-Event-ID": str(got[-1][0])}) as source:
            if source.response.status_code == 200:
                _read(source, got)
            else:
                assert source.response.status_code == 204
        # Everything was sent: the next connection is told not to come back.
        with connect_sse(sse, "GET", url, headers={"Last-Event-ID": str(got[-1][0])}) as source:
            assert source.response.status_code == 204

    listed = http.get(url, params={"limit": 1000}).json()["data"]
    assert [seq for seq, _, _ in got] == list(range(1, len(listed) + 1))  # exactly 1..N: no gap, no repeat
    assert [data for _, _, data in got] == listed and all(t == d["type"] for _, t, d in got)
    assert [d["data"]["epoch"] for _, t, d in got if t == "metrics"] == [1, 2, 3]
    statuses = [d["data"]["to"] for _, t, d in got if t == "status"]
    assert statuses[-1] == "succeeded", stack.worker.tail()
    assert "onnx" in (got[-1][2]["message"] or "")
