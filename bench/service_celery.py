"""The raw Celery round-trip baseline of `make bench`: a no-op task on the same Redis, with taas's Celery settings.

The task records when it started (a Redis list push), so the bench measures send_task -> task running, the part of
"submit -> claim" that Celery itself costs. Run as a worker with the same flags as `taas worker`:

    TAAS_BENCH_BROKER=redis://… TAAS_BENCH_QUEUE=q python -m celery -A bench.service_celery worker \
        --concurrency=1 --without-gossip --without-mingle -Q q
"""

import os
import tempfile
import time
from pathlib import Path

from celery import Celery

from core.broker import celery_config
from core.settings import SharedSettings

PING_TASK = "bench.ping"
BROKER = os.environ.get("TAAS_BENCH_BROKER", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("TAAS_BENCH_QUEUE", "bench-raw")

app = Celery("taas-bench-raw")
app.conf.update(celery_config(SharedSettings(broker_url=BROKER, data_dir=Path(tempfile.gettempdir()),
                                             queue_name=QUEUE)))
app.conf.task_routes = {PING_TASK: {"queue": QUEUE}}

_redis = None


def reply_key(queue: str, token: str) -> str:
    """The Redis list a ping with this token pushes its start time to."""
    return f"taas-bench:{queue}:{token}"


@app.task(name=PING_TASK, ignore_result=True)
def ping(token: str) -> None:
    """Push the wall-clock time this task started to the token's list."""
    started = time.time()
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(BROKER)
    key = reply_key(QUEUE, token)
    _redis.rpush(key, repr(started))
    _redis.expire(key, 600)
