"""Run one job: claim, fetch inputs, train with heartbeats, upload artifacts, finish. The API is the only writer."""

import json
import logging
import os
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from worker.cache import BlobCache
from worker.client import ApiError, InternalClient, StaleAttempt
from worker.config import get_worker_settings

log = logging.getLogger(__name__)
CODE_VERSION = "0.1.0"


class Heartbeat(threading.Thread):
    """Renews the lease; notices cancellation and loss of the lease."""

    def __init__(self, client: InternalClient, job_id: str, attempt: int, every: float):
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.client, self.job_id, self.attempt, self.every = client, job_id, attempt, every
        self.cancel, self.lost, self.done = threading.Event(), threading.Event(), threading.Event()

    def beat(self) -> None:
        try:
            answer = self.client.post(f"/internal/jobs/{self.job_id}/heartbeat", {"attempt": self.attempt})
            if answer.get("stop"):
                self.cancel.set()
        except StaleAttempt:
            self.lost.set()
        except Exception as exc:  # the API may be away for a while: keep training, keep trying
            log.warning("heartbeat for %s failed: %s", self.job_id, exc)

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.beat()


class ApiLogger:
    """The recipe's MetricLogger: every number leaves through the API."""

    def __init__(self, client: InternalClient, job_id: str, attempt: int, seed: int | None = None):
        self.client, self.job_id, self.attempt, self.n, self.seed = client, job_id, attempt, 0, seed

    def log_epoch(self, metrics: dict[str, Any]) -> None:
        values = {k: v for k, v in metrics.items() if k != "epoch"}
        self.client.post(f"/internal/jobs/{self.job_id}/metrics",
                         {"attempt": self.attempt, "epoch": int(metrics["epoch"]), "metrics": values})
        _maybe_inject_fault(self.seed, int(metrics["epoch"]))

    def log_event(self, message: str, **data: Any) -> None:
        self.n += 1
        self.client.post(f"/internal/jobs/{self.job_id}/events",
                         {"attempt": self.attempt, "key": str(self.n), "message": message,
                          "data": json.loads(json.dumps(data, default=str)) or None})


def _maybe_inject_fault(seed: int | None, epoch: int) -> None:
    s = get_worker_settings()
    if s.testing and s.fault_seed is not None and seed == s.fault_seed and epoch == s.fault_epoch:
        if s.fault_action == "raise":
            raise RuntimeError(f"injected fault after epoch {epoch}")


def run_job(job_id: str) -> None:
    """Claim job_id and run it to a terminal state (or hand it back if this worker lost it)."""
    s = get_worker_settings()
    client = InternalClient(s.api_url, s.worker_token, retry_seconds=s.http_retry_seconds)
    name = s.worker_name or f"{socket.gethostname()}:{os.getpid()}"
    try:
        try:
            claim = client.post(f"/internal/jobs/{job_id}/claim", {"worker": name})
        except ApiError as exc:
            if exc.code in ("job_not_claimable", "job_not_found"):
                log.info("job %s not claimable (%s): dropping the message", job_id, exc.message)
                return
            raise
        _run_claimed(client, claim, BlobCache(s.resolved_cache_dir, s.cache_max_bytes))
    finally:
        client.close()


def _run_claimed(client: InternalClient, claim: dict[str, Any], cache: BlobCache) -> None:
    job_id, attempt = claim["job_id"], claim["attempt"]
    hb = Heartbeat(client, job_id, attempt, float(claim.get("heartbeat_seconds", 10)))
    hb.start()
    try:
        _train(client, claim, cache, hb)
    except StaleAttempt:
        log.warning("job %s: attempt %s is stale; stopping without touching the job", job_id, attempt)
    except Exception as exc:
        from worker.training.recipe import TrainingCancelled

        if hb.lost.is_set():
            log.warning("job %s: lease lost; stopping", job_id)
        elif isinstance(exc, TrainingCancelled):
            client.post(f"/internal/jobs/{job_id}/cancelled", {"attempt": attempt})
        else:
            log.exception("job %s failed", job_id)
            code = "invalid_spec" if isinstance(exc, ValueError) else "training_error"
            try:
                client.post(f"/internal/jobs/{job_id}/fail",
                            {"attempt": attempt, "code": code, "message": f"{type(exc).__name__}: {exc}"})
            except StaleAttempt:
                pass
    finally:
        hb.done.set()


def _train(client: InternalClient, claim: dict[str, Any], cache: BlobCache, hb: Heartbeat) -> None:
    from worker.training.recipe import run_training  # torch is imported here, in the worker only

    job_id, attempt, ds = claim["job_id"], claim["attempt"], claim["dataset"]
    archive = cache.fetch(client, f"/internal/datasets/{ds['id']}/archive", ds["sha256"])
    weights = None
    if claim.get("weights"):
        w = claim["weights"]
        weights = cache.fetch(client, f"/internal/weights/{w['id']}", w["sha256"])
    with tempfile.TemporaryDirectory(prefix=f"taas-{job_id}-") as tmp:
        manifest_path = Path(tmp) / "manifest.json"
        client.download(f"/internal/datasets/{ds['id']}/manifest", manifest_path)
        manifest = json.loads(manifest_path.read_text())
        logger = ApiLogger(client, job_id, attempt, claim["spec"]["hyperparameters"]["seed"])
        result = run_training(spec=claim["spec"], archive_path=archive, manifest=manifest, weights_path=weights,
                              out_dir=Path(tmp) / "model", logger=logger,
                              should_stop=lambda: hb.cancel.is_set() or hb.lost.is_set())
        if hb.lost.is_set():
            raise StaleAttempt(409, "stale_attempt", "lease lost during training")
        for fmt, name in (("safetensors", "model.safetensors"), ("config", "config.json")):
            client.upload(f"/internal/jobs/{job_id}/artifacts/{fmt}", result.model_dir / name, {"attempt": attempt})
        config = json.loads((result.model_dir / "config.json").read_text())
    client.post(f"/internal/jobs/{job_id}/succeed",
                {"attempt": attempt, "result": {"metrics": result.metrics, "config": config,
                                                "best_epoch": result.best_epoch, "code_version": CODE_VERSION}})
