"""Observability: /metrics (in this process, and summed over `taas api --workers 2`), JSON logs carrying the job
id, and /readyz answering for the database and the broker."""

import io
import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REDIS_URL, free_port
from tests.procs import Proc, poll, taas, wait_healthy

WORKER = {"Authorization": "Bearer test-worker-token"}
NO_SUCH_JOB = "job_" + "0" * 26


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value, from a text exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scrape: dict, name: str, **labels: str) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


def scrape(client) -> dict:  # noqa: ANN001
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain"), resp.text
    return samples(resp.text)


def new_job(client, auth, ds_id: str) -> str:  # noqa: ANN001
    resp = client.post("/v1/jobs", headers=auth, json={"dataset_id": ds_id, "base_model": {
        "arch": "resnet18", "weights": "none"}, "hyperparameters": {"epochs": 2, "image_size": 32}})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_metrics_count_transitions_heartbeats_durations_and_requests_by_route(client, auth, ready_dataset):
    from sqlalchemy import func, select

    from app.db import get_sessionmaker
    from app.models import Job

    before = scrape(client)
    job = new_job(client, auth, ready_dataset["id"])
    attempt = client.post(f"/internal/jobs/{job}/claim", headers=WORKER, json={}).json()["attempt"]
    beat = f"/internal/jobs/{job}/heartbeat"
    for _ in range(2):
        assert client.post(beat, headers=WORKER, json={"attempt": attempt}).json() == {"stop": False}
    client.post(f"/v1/jobs/{job}/cancel", headers=auth)
    assert client.post(beat, headers=WORKER, json={"attempt": attempt}).json() == {"stop": True}
    assert client.post(beat, headers=WORKER, json={"attempt": attempt + 1}).status_code == 409
    assert client.post(f"/internal/jobs/{job}/cancelled", headers=WORKER, json={"attempt": attempt}).status_code == 200
    for _ in range(3):
        assert client.get(f"/v1/jobs/{job}", headers=auth).status_code == 200
    assert client.get("/no/such/route").status_code == 404
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for outcome, n in (("continue", 2), ("stop", 1), ("stale", 1)):
        assert delta("taas_worker_heartbeats_total", outcome=outcome) == n, outcome
    assert delta("taas_job_transitions_total", to="running") == 1
    assert delta("taas_job_transitions_total", to="cancelled") == 1
    assert delta("taas_job_queue_wait_seconds_count") == 1
    assert delta("taas_job_run_duration_seconds_count", status="cancelled") == 1
    assert delta("taas_job_run_duration_seconds_bucket", status="cancelled", le="+Inf") == 1
    # Latency by route template: three GETs of this job under one label set, never the raw path.
    assert delta("taas_http_request_duration_seconds_count", method="GET", route="/v1/jobs/{job_id}",
                 status="2xx") == 3
    assert delta("taas_http_request_duration_seconds_count", method="GET", route="unmatched", status="4xx") == 1
    text = client.get("/metrics").text
    assert job not in text and "/no/such/route" not in text
    # Jobs by status come from the database: every process reports the same numbers.
    with get_sessionmaker()() as s:
        counts = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    for status in ("queued", "running", "succeeded", "failed", "cancelled"):
        assert value(after, "taas_jobs", status=status) == counts.get(status, 0), status


def test_metrics_can_require_a_token(client, monkeypatch):
    from app.config import get_settings

    monkeypatch.setattr(get_settings(), "metrics_token", "scrape-me")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200


@contextmanager
def json_log() -> Iterator[io.StringIO]:
    """Root records at INFO and above, formatted as the service formats them, into a buffer."""
    from app.observability import formatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("json"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_logs_are_json_lines_that_carry_the_job_id(client, auth, ready_dataset):
    job = new_job(client, auth, ready_dataset["id"])
    with json_log() as stream:
        assert client.post(f"/v1/jobs/{job}/cancel", headers=auth).json()["status"] == "cancelled"
        # Any library's record, written while a job is in context, carries it too.
        with structlog.contextvars.bound_contextvars(job_id=job):
            logging.getLogger("some.library").warning("disk %s", "slow", extra={"free_bytes": 12})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]  # every line is one JSON object
    request = [x for x in lines if x["event"] == "request" and x.get("route") == "/v1/jobs/{job_id}/cancel"]
    assert request and request[0]["job_id"] == job and request[0]["status"] == 200 and request[0]["ms"] >= 0
    moved = [x for x in lines if x["event"] == "job status changed"]
    assert moved and moved[0]["job_id"] == job and moved[0]["from"] == "queued" and moved[0]["to"] == "cancelled"
    lib = next(x for x in lines if x["logger"] == "some.library")
    assert lib == {**lib, "event": "disk slow", "job_id": job, "free_bytes": 12, "level": "warning"}
    assert all("timestamp" in x and "level" in x for x in lines)


def test_readyz_answers_for_the_database_and_the_broker(client, monkeypatch):
    import app.observability
    import app.queue
    from app.config import get_settings
    from app.db import make_engine

    ok = client.get("/readyz")
    assert ok.status_code == 200 and ok.json() == {"ok": True, "checks": {"database": "ok", "broker": "ok"}}
    settings = get_settings()
    for broker, expected in ((REDIS_URL, "ok"), (f"redis://127.0.0.1:{free_port()}/0", "unreachable")):
        monkeypatch.setattr(settings, "broker_url", broker)
        app.queue._producer.cache_clear()
        resp = client.get("/readyz")
        assert resp.json()["checks"]["broker"] == expected, resp.text
        assert resp.status_code == (200 if expected == "ok" else 503)
    monkeypatch.undo()
    app.queue._producer.cache_clear()

    down = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/taas")
    monkeypatch.setattr(app.observability, "get_engine", lambda: down)
    resp = client.get("/readyz")
    assert resp.status_code == 503 and resp.json()["checks"] == {"database": "unreachable", "broker": "ok"}
    assert "127.0.0.1" not in resp.text  # the why goes to the log, not to an unauthenticated caller
    assert client.get("/healthz").status_code == 200  # liveness does not depend on either


def test_several_api_processes_sum_their_metrics_and_log_json(client, auth, pg_url, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"TAAS_DATA_DIR": str(tmp_path / "data"), "TAAS_DATABASE_URL": pg_url, "TAAS_PORT": str(port),
                "TAAS_SECRET_KEY": "test-pepper", "TAAS_WORKER_TOKEN": "test-worker-token", "TMPDIR": str(tmp_path),
                "TAAS_WEBHOOK_DISPATCH": "0"})
    url = f"http://127.0.0.1:{port}"
    api = Proc(taas("api", "--workers", "2"), env, tmp_path / "api.log")
    try:
        wait_healthy(url, api)
        # Each worker process writes its samples into the folder `taas api` made for this run.
        [folder] = tmp_path.glob("taas-metrics-*")
        poll(lambda: len({p.stem.rsplit("_", 1)[-1] for p in folder.glob("*.db")}) >= 2, 60, "two processes' files")

        def count() -> float:
            # A new connection per scrape: either process may answer, and each must give the sum of both.
            return value(samples(httpx.get(f"{url}/metrics", timeout=10).text),
                         "taas_http_request_duration_seconds_count", method="GET", route="/v1/jobs/{job_id}",
                         status="4xx")

        start = count()
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: httpx.get(f"{url}/v1/jobs/{NO_SUCH_JOB}", headers=auth, timeout=10)
                                  .status_code, range(40)))
        assert codes == [404] * 40
        assert [count() for _ in range(6)] == [start + 40] * 6
    finally:
        api.stop()
    assert not folder.exists()  # removed when the API stops: the next run starts from zero
    lines = [json.loads(line) for line in api.log.read_text().splitlines() if line.startswith("{")]
    assert any(x.get("logger", "").startswith("uvicorn") for x in lines)  # uvicorn's own lines are JSON too
    served = [x for x in lines if x["event"] == "request" and x.get("job_id") == NO_SUCH_JOB]
    assert len(served) == 40 and {x["status"] for x in served} == {404}


@pytest.fixture(autouse=True)
def _no_multiproc_env() -> None:
    assert not os.environ.get("PROMETHEUS_MULTIPROC_DIR"), "these tests run the in-process registry"
