"""Run one job: claim, fetch inputs, train with heartbeats and checkpoints, upload artifacts, finish.

The API is the only writer: everything this worker learns leaves through the internal routes, fenced by attempt.
"""

import json
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from core.spec import SpecTooLarge
from worker import shutdown
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
            answer = self.client.post(f"/internal/jobs/{self.job_id}/heartbeat", {"attempt": self.attempt},
                                      retry_seconds=self.every)
            if answer.get("stop"):
                self.cancel.set()
        except StaleAttempt:
            self.lost.set()
        except Exception as exc:  # the API may be away for a while: keep training, keep trying
            log.warning("heartbeat for %s failed: %s", self.job_id, exc)

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.beat()

    def should_stop(self) -> bool:
        return self.cancel.is_set() or self.lost.is_set() or shutdown.requested()


class ApiLogger:
    """The recipe's MetricLogger and checkpoint sink: every number and file leaves through the API."""

    def __init__(self, client: InternalClient, job_id: str, attempt: int, seed: int | None = None,
                 should_stop: Any = lambda: False):
        self.client, self.job_id, self.attempt, self.seed = client, job_id, attempt, seed
        self.should_stop = should_stop
        self.n = 0
        self.epochs_logged = 0
        self.pending: dict[int, Path] = {}

    def on_checkpoint(self, epoch: int, path: Path) -> None:
        # Sent with the epoch's metrics, so the checkpoint and its metrics row are stored in one transaction.
        self.pending[epoch] = path

    def log_epoch(self, metrics: dict[str, Any]) -> None:
        epoch = int(metrics["epoch"])
        values = {k: v for k, v in metrics.items() if k != "epoch"}
        ckpt = self.pending.pop(epoch, None)
        if ckpt is not None:
            self.client.upload(f"/internal/jobs/{self.job_id}/checkpoint", ckpt,
                               {"attempt": self.attempt, "epoch": epoch},
                               headers={"X-Taas-Metrics": json.dumps(values)})
        else:
            self.client.post(f"/internal/jobs/{self.job_id}/metrics",
                             {"attempt": self.attempt, "epoch": epoch, "metrics": values})
        self.epochs_logged += 1
        _maybe_inject_fault(self, epoch)

    def log_event(self, message: str, **data: Any) -> None:
        self.n += 1
        self.client.post(f"/internal/jobs/{self.job_id}/events",
                         {"attempt": self.attempt, "key": str(self.n), "message": message,
                          "data": json.loads(json.dumps(data, default=str)) or None})


def _maybe_inject_fault(logger: ApiLogger, epoch: int) -> None:
    """Test-only faults after an epoch is stored, keyed by the job's seed so other jobs are untouched."""
    s = get_worker_settings()
    hit = epoch == s.fault_epoch or (s.fault_epoch == 0 and logger.epochs_logged == 1)
    if not (s.testing and s.fault_seed is not None and logger.seed == s.fault_seed and hit):
        return
    log.warning("injecting fault %r after epoch %s", s.fault_action, epoch)
    action = s.fault_action
    if action == "raise":
        raise RuntimeError(f"injected fault after epoch {epoch}")
    if action == "kill":  # this process only (a pool child): the worker itself survives
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "kill_group":  # the whole worker (its process group), parent included
        os.killpg(os.getpgid(0), signal.SIGKILL)
    if action == "sigterm":  # a deploy stopping the worker: SIGTERM to the Celery parent
        os.kill(os.getppid(), signal.SIGTERM)
    deadline = time.monotonic() + 120
    if action == "block":  # hold the job until told to stop (cancel or shutdown)
        while not logger.should_stop() and time.monotonic() < deadline:
            time.sleep(0.05)
    if action == "block_until_api_down":  # so that the next posts meet a stopped API
        while time.monotonic() < deadline:
            try:
                logger.client.http.get("/healthz", timeout=1)
            except Exception:
                return
            time.sleep(0.05)


_clients: dict[int, InternalClient] = {}


def _client() -> InternalClient:
    """One client per worker process: a new httpx client loads the CA bundle (about 20 ms here) every time."""
    pid = os.getpid()  # never share a connection pool across a fork
    if pid not in _clients:
        s = get_worker_settings()
        _clients.clear()
        _clients[pid] = InternalClient(s.api_url, s.worker_token or "", retry_seconds=s.http_retry_seconds)
    return _clients[pid]


def run_job(job_id: str) -> None:
    """Claim job_id and run it to a terminal state (or hand it back if this worker is stopping or lost it)."""
    s = get_worker_settings()
    client = _client()
    name = s.worker_name or f"{socket.gethostname()}:{os.getpid()}"
    if shutdown.requested():
        return  # never start a job while shutting down; the message goes back to the broker
    try:
        claim = client.post(f"/internal/jobs/{job_id}/claim", {"worker": name})
    except ApiError as exc:
        if exc.code in ("job_not_claimable", "job_not_found"):
            log.info("job %s not claimable (%s): dropping the message", job_id, exc.message)
            return
        raise
    _run_claimed(client, claim, BlobCache(s.resolved_cache_dir, s.cache_max_bytes))


def _run_claimed(client: InternalClient, claim: dict[str, Any], cache: BlobCache) -> None:
    from worker.training.recipe import TrainingCancelled

    job_id, attempt = claim["job_id"], claim["attempt"]
    path = f"/internal/jobs/{job_id}"
    hb = Heartbeat(client, job_id, attempt, float(claim.get("heartbeat_seconds", 10)))
    hb.start()
    try:
        _train(client, claim, cache, hb)
    except StaleAttempt:
        log.warning("job %s: attempt %s is stale; stopping without touching the job", job_id, attempt)
    except Exception as exc:
        try:
            if hb.lost.is_set():
                log.warning("job %s: lease lost; stopping", job_id)
            elif isinstance(exc, TrainingCancelled) and hb.cancel.is_set():
                client.post(f"{path}/cancelled", {"attempt": attempt})
            elif isinstance(exc, TrainingCancelled) and shutdown.requested():
                log.warning("job %s: handing attempt %s back (shutdown)", job_id, attempt)
                client.post(f"{path}/release", {"attempt": attempt})
            else:
                log.exception("job %s failed", job_id)
                code = ("spec_too_large" if isinstance(exc, SpecTooLarge) else
                        "invalid_spec" if isinstance(exc, ValueError) else "training_error")
                client.post(f"{path}/fail", {"attempt": attempt, "code": code,
                                             "message": f"{type(exc).__name__}: {exc}"})
        except StaleAttempt:
            pass
    finally:
        hb.done.set()
        _release_accelerator_memory()


def _release_accelerator_memory() -> None:
    """Hand the finished job's GPU memory back (the recipe frees its tensors; torch's allocator keeps them
    cached until told), so the next job, or another process on the GPU, can have it."""
    try:
        from worker.training.device import release_memory

        release_memory()
    except Exception:  # never let the clean-up fail a job that has already ended
        log.exception("could not release accelerator memory")


def _train(client: InternalClient, claim: dict[str, Any], cache: BlobCache, hb: Heartbeat) -> None:
    from worker.training.recipe import run_training  # torch is imported here, in the worker only

    job_id, attempt, ds = claim["job_id"], claim["attempt"], claim["dataset"]
    s = get_worker_settings()
    archive = cache.fetch(client, f"/internal/datasets/{ds['id']}/archive", ds["sha256"])
    weights, weights_sha = None, None
    if claim.get("weights"):
        w = claim["weights"]
        weights, weights_sha = cache.fetch(client, f"/internal/weights/{w['id']}", w["sha256"]), w["sha256"]
    with tempfile.TemporaryDirectory(prefix=f"taas-{job_id}-") as tmp:
        tmp_path = Path(tmp)
        client.download(f"/internal/datasets/{ds['id']}/manifest", tmp_path / "manifest.json")
        manifest = json.loads((tmp_path / "manifest.json").read_text())
        resume = None
        if claim.get("checkpoint"):
            resume = tmp_path / "resume.pt"
            client.download(f"/internal/jobs/{job_id}/checkpoint", resume)
        logger = ApiLogger(client, job_id, attempt, claim["spec"]["hyperparameters"]["seed"], hb.should_stop)
        cache_root = s.resolved_cache_dir
        result = run_training(spec=claim["spec"], archive_path=archive, manifest=manifest, weights_path=weights,
                              out_dir=tmp_path / "model", logger=logger, should_stop=hb.should_stop,
                              checkpoint_dir=tmp_path / "checkpoints", resume_from=resume,
                              on_checkpoint=logger.on_checkpoint, dataset_sha256=ds["sha256"],
                              weights_sha256=weights_sha, feature_cache_dir=cache_root / "features",
                              image_cache_dir=cache_root / "images", max_batch_pixels=claim.get("max_batch_pixels"))
        if hb.lost.is_set():
            raise StaleAttempt(409, "stale_attempt", "lease lost during training")
        for fmt, name in (("safetensors", "model.safetensors"), ("config", "config.json")):
            client.upload(f"/internal/jobs/{job_id}/artifacts/{fmt}", result.model_dir / name, {"attempt": attempt})
        config = json.loads((result.model_dir / "config.json").read_text())
        client.post(f"/internal/jobs/{job_id}/succeed",
                    {"attempt": attempt, "result": {"metrics": result.metrics, "config": config,
                                                    "best_epoch": result.best_epoch, "code_version": CODE_VERSION}})
        # After the job has succeeded, so the export never delays it; a failed export is only a warning.
        _export_onnx(client, logger, result.model_dir)


def _export_onnx(client: InternalClient, logger: ApiLogger, model_dir: Path) -> None:
    try:
        from worker.training.artifact import load_model
        from worker.training.export import export_onnx

        model, config = load_model(model_dir)
        info = export_onnx(model, config, model_dir / "model.onnx")
        client.upload(f"/internal/jobs/{logger.job_id}/artifacts/onnx", model_dir / "model.onnx",
                      {"attempt": logger.attempt, "meta": json.dumps(info)})
        logger.log_event("onnx export checked by onnxruntime", **info)
    except StaleAttempt:
        raise
    except Exception as exc:
        log.warning("job %s: ONNX export failed: %s", logger.job_id, exc)
        try:
            logger.log_event(f"warning: ONNX export failed: {type(exc).__name__}: {exc}"[:1000])
        except Exception:
            log.exception("could not report the failed export")
