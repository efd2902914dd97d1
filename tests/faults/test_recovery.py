"""Kill things and check that no job is lost, run twice or left running. Faults are injected, never raced."""

import signal

from celery import Celery

from core.broker import TRAIN_TASK
from tests.faults.conftest import FAULT_SEED, Cluster, PrivateRedis
from tests.procs import poll


def _trained_epochs(events: list[dict]) -> list[tuple[int, int]]:
    """(attempt, epoch) of every metrics event: one per epoch trained to the end by some attempt."""
    return [(e["data"]["attempt"], e["data"]["epoch"]) for e in events if e["type"] == "metrics"]


def test_sigkill_worker_mid_job_resumes_from_last_checkpoint(cluster: Cluster):
    ds = cluster.dataset()
    first = cluster.start_worker(action="kill_group", epoch="2")  # dies right after epoch 2 is stored
    job_id = cluster.submit(ds, epochs=5, seed=FAULT_SEED)
    poll(lambda: not first.alive(), 120, "the first worker to die")
    cluster.start_worker()
    job = cluster.wait_status(job_id, ("succeeded", "failed", "cancelled"))
    assert job["status"] == "succeeded", job
    assert job["attempt"] == 2
    assert [m["epoch"] for m in cluster.metrics(job_id)] == [1, 2, 3, 4, 5]  # exactly once each
    events = cluster.events(job_id)
    trained = _trained_epochs(events)
    assert trained == [(1, 1), (1, 2), (2, 3), (2, 4), (2, 5)], trained
    assert len(trained) <= 6
    resumed = [e for e in events if e["message"] == "resumed from checkpoint"]
    assert resumed and resumed[0]["data"]["epoch"] == 2
    statuses = [e["data"]["to"] for e in events if e["type"] == "status"]
    assert statuses == ["queued", "running", "queued", "running", "succeeded"]


def test_same_message_delivered_twice_trains_once(cluster: Cluster):
    ds = cluster.dataset()
    job_id = cluster.submit(ds, epochs=2)
    producer = Celery(broker=cluster.env["TAAS_BROKER_URL"])
    producer.send_task(TRAIN_TASK, args=[job_id], queue=cluster.env["TAAS_QUEUE_NAME"])  # the duplicate
    worker = cluster.start_worker()
    job = cluster.wait_status(job_id, ("succeeded", "failed"))
    assert job["status"] == "succeeded" and job["attempt"] == 1
    poll(lambda: "not claimable" in worker.tail(200_000), 60, "the duplicate to be dropped")
    statuses = [e["data"]["to"] for e in cluster.events(job_id) if e["type"] == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    assert [a for a, _ in _trained_epochs(cluster.events(job_id))] == [1, 1]


def test_job_that_kills_its_worker_every_time_fails_worker_lost_while_others_run(cluster: Cluster):
    ds = cluster.dataset()
    # After the first epoch of every attempt the pool child is killed; the worker itself lives on.
    worker = cluster.start_worker(action="kill", epoch="0")
    bad = cluster.submit(ds, epochs=5, seed=FAULT_SEED)  # one epoch per attempt: never reaches the end
    good = cluster.submit(ds, epochs=2, seed=1)
    bad_job = cluster.wait_status(bad, ("succeeded", "failed", "cancelled"), timeout=240)
    assert bad_job["status"] == "failed" and bad_job["error"]["code"] == "worker_lost", bad_job
    assert bad_job["attempt"] == 3
    assert cluster.wait_status(good, ("succeeded", "failed"), timeout=240)["status"] == "succeeded"
    assert worker.alive()


def test_sigterm_hands_the_job_back_without_spending_an_attempt(cluster: Cluster):
    ds = cluster.dataset()
    first = cluster.start_worker(action="sigterm", epoch="1")  # a deploy stops the worker after epoch 1
    job_id = cluster.submit(ds, epochs=4, seed=FAULT_SEED)
    poll(lambda: not first.alive(), 120, "the first worker to exit after SIGTERM")
    assert first.p.returncode == 0, first.tail()
    job = cluster.job(job_id)
    assert job["status"] == "queued", job
    events = cluster.events(job_id)
    assert any("handed back" in (e["message"] or "") for e in events)
    cluster.start_worker()
    job = cluster.wait_status(job_id, ("succeeded", "failed"))
    assert job["status"] == "succeeded" and job["attempt"] == 2
    assert [m["epoch"] for m in cluster.metrics(job_id)] == [1, 2, 3, 4]


def test_cancel_a_running_job_stops_it_without_a_model(cluster: Cluster):
    ds = cluster.dataset()
    cluster.start_worker(action="block", epoch="1")  # holds after epoch 1 until told to stop
    job_id = cluster.submit(ds, epochs=5, seed=FAULT_SEED)
    poll(lambda: cluster.metrics(job_id), 120, "epoch 1")
    assert cluster.http.post(f"/v1/jobs/{job_id}/cancel").json()["cancel_requested_at"]
    job = cluster.wait_status(job_id, ("cancelled", "succeeded", "failed"), timeout=60)
    assert job["status"] == "cancelled" and job["model_id"] is None
    assert cluster.http.get("/v1/models").json()["data"] == []


def test_restart_the_api_while_a_job_runs_loses_and_doubles_nothing(cluster: Cluster):
    ds = cluster.dataset()
    worker = cluster.start_worker(action="block_until_api_down", epoch="1")
    job_id = cluster.submit(ds, epochs=4, seed=FAULT_SEED)
    poll(lambda: cluster.metrics(job_id), 120, "epoch 1")
    cluster.api.stop(signal.SIGKILL)
    poll(lambda: "retrying" in worker.tail(200_000), 60, "the worker to retry against the stopped API")
    cluster.start_api()
    job = cluster.wait_status(job_id, ("succeeded", "failed"))
    assert job["status"] == "succeeded", (job, worker.tail())
    assert [m["epoch"] for m in cluster.metrics(job_id)] == [1, 2, 3, 4]
    assert job["attempt"] == 1  # the lease outlived the outage through retried heartbeats or was not needed


def test_redis_restart_while_a_job_is_queued(tmp_path, fresh_db):
    redis = PrivateRedis(tmp_path)
    redis.start()
    cluster = Cluster(tmp_path, fresh_db, redis.url)
    try:
        cluster.start_api()
        ds = cluster.dataset()
        job_id = cluster.submit(ds, epochs=1)  # sent to Redis; no worker yet
        redis.stop()  # the message is lost with the server
        redis.start()
        cluster.start_worker()
        job = cluster.wait_status(job_id, ("succeeded", "failed"), timeout=120)
        assert job["status"] == "succeeded"
        sends = [e for e in cluster.events(job_id) if e["type"] == "status"]
        assert [e["data"]["to"] for e in sends] == ["queued", "running", "succeeded"]
    finally:
        cluster.close()
        redis.stop()
