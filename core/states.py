"""Job and dataset states, and the job transitions the lifecycle allows."""

from enum import StrEnum


class JobStatus(StrEnum):
    queued = "queued"  # stored and sent to the broker; waiting for a worker's claim
    running = "running"  # claimed by a worker holding the lease (attempt = fencing token)
    succeeded = "succeeded"  # trained; model_id is set
    failed = "failed"  # error is set; final
    cancelled = "cancelled"  # stopped on request; final, no model


FINISHED = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})
UNFINISHED = frozenset({JobStatus.queued, JobStatus.running})

# running -> queued only when a worker is lost and the job will be retried.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.queued: frozenset({JobStatus.running, JobStatus.cancelled, JobStatus.failed}),
    JobStatus.running: frozenset(
        {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled, JobStatus.queued}
    ),
    JobStatus.succeeded: frozenset(),
    JobStatus.failed: frozenset(),
    JobStatus.cancelled: frozenset(),
}


def can_transition(src: JobStatus, dst: JobStatus) -> bool:
    """Whether the lifecycle allows src -> dst."""
    return dst in TRANSITIONS[src]


class DatasetStatus(StrEnum):
    processing = "processing"  # structure checked; images being decoded and split in the background
    ready = "ready"  # usable by jobs
    failed = "failed"  # error names the first bad member
