"""Concurrent cancel, claim and finish calls on one job: exactly one terminal state, a valid history."""

from concurrent.futures import ThreadPoolExecutor

from core.states import FINISHED, JobStatus, can_transition

WORKER = {"Authorization": "Bearer test-worker-token"}


def test_fifty_concurrent_cancel_claim_and_finish_calls(client, auth, ready_dataset):
    spec = {"dataset_id": ready_dataset["id"], "base_model": {"arch": "resnet18", "weights": "none"}}
    job_id = client.post("/v1/jobs", headers=auth, json=spec).json()["id"]
    base = f"/internal/jobs/{job_id}"

    def call(i: int) -> int:
        kind = i % 3
        if kind == 0:
            return client.post(f"/v1/jobs/{job_id}/cancel", headers=auth).status_code
        if kind == 1:
            return client.post(f"{base}/claim", headers=WORKER, json={"worker": f"w{i}"}).status_code
        return client.post(f"{base}/fail", headers=WORKER, json={"attempt": 1, "message": f"fail {i}"}).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(call, range(50)))
    assert all(c in (200, 409) for c in codes), codes
    job = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
    if job["status"] == "running":  # a claim won and cancel only flagged it: finish it the worker's way
        client.post(f"{base}/cancelled", headers=WORKER, json={"attempt": job["attempt"]})
        job = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
    assert job["status"] in FINISHED
    assert job["attempt"] <= 1  # at most one claim won
    events = client.get(f"/v1/jobs/{job_id}/events", headers=auth).json()["data"]
    statuses = [e["data"]["to"] for e in events if e["type"] == "status"]
    assert statuses[0] == "queued"
    for src, dst in zip(statuses, statuses[1:], strict=False):
        assert can_transition(JobStatus(src), JobStatus(dst)), statuses
    assert sum(s in FINISHED for s in statuses) == 1, statuses
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
