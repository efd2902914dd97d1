"""Property-based tests: the job lifecycle's compare-and-set on PostgreSQL, and parsers fed arbitrary bytes."""

import io
import json
import os
import re
import threading
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from core.states import FINISHED, TRANSITIONS, JobStatus, can_transition
from tests.factories import dataset_members

STATUSES = list(JobStatus)


class JobLifecycle(RuleBasedStateMachine):
    """Drives one job row through arbitrary requested transitions, stale attempts and races, via cas().

    The attempt stays fixed here (the claim, not cas(), issues new ones); a stale one is this one plus or minus 1."""

    def __init__(self) -> None:
        super().__init__()
        from app.db import get_sessionmaker
        from app.jobs.events import append_event
        from app.models import Job
        from core.ids import new_id

        self.sessions = get_sessionmaker()
        self.job_id = new_id("job")
        with self.sessions() as s:
            s.add(Job(id=self.job_id, tenant="t-lifecycle", dataset_id="ds_none", status=JobStatus.queued,
                      spec={}, attempt=0, max_attempts=3, progress_epoch=0, epochs=1, next_seq=0))
            s.flush()
            append_event(s, self.job_id, "status", "job queued", {"to": "queued"})
            s.commit()
        self.status, self.attempt = JobStatus.queued, 0

    def _cas(self, src: JobStatus, dst: JobStatus, attempt: int | None) -> bool:
        from app.jobs.transitions import cas

        with self.sessions() as s:
            moved = cas(s, self.job_id, src, dst, attempt=attempt)
            s.commit()
        return moved

    def _moved(self, dst: JobStatus) -> None:
        self.status = dst

    @rule(src=st.sampled_from(STATUSES), dst=st.sampled_from(STATUSES),
          fenced=st.booleans(), stale=st.integers(-1, 1))
    def request_transition(self, src: JobStatus, dst: JobStatus, fenced: bool, stale: int) -> None:
        """Any writer asks for src -> dst, believing the job is in src (maybe wrongly), maybe with a stale attempt."""
        if not can_transition(src, dst):
            with pytest.raises(AssertionError):  # the lifecycle refuses it before touching the database
                self._cas(src, dst, None)
            return
        attempt = self.attempt + stale if fenced else None
        moved = self._cas(src, dst, attempt)
        assert moved == (src == self.status and (attempt is None or attempt == self.attempt)), (src, dst, attempt)
        if moved:
            self._moved(dst)

    @precondition(lambda self: self.status not in FINISHED)
    @rule(data=st.data())
    def race(self, data: st.DataObject) -> None:
        """Two writers race from the same state to the same target: exactly one wins.

        Same target on purpose: the model's next state must not depend on which thread won, or Hypothesis
        replays a different path and reports a flaky strategy."""
        target = data.draw(st.sampled_from(STATUSES))
        assume(target in TRANSITIONS[self.status])
        first = second = target
        src, barrier, results = self.status, threading.Barrier(2), {}

        def go(name: str, dst: JobStatus) -> None:
            barrier.wait(timeout=10)
            results[name] = (dst, self._cas(src, dst, self.attempt))

        threads = [threading.Thread(target=go, args=(n, d)) for n, d in (("a", first), ("b", second))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        winners = [dst for dst, moved in results.values() if moved]
        assert len(results) == 2 and len(winners) == 1, results
        self._moved(winners[0])

    @invariant()
    def database_agrees_and_history_is_valid(self) -> None:
        from sqlalchemy import select

        from app.models import Job, JobEvent

        with self.sessions() as s:
            job = s.get(Job, self.job_id)
            events = list(s.scalars(select(JobEvent).where(JobEvent.job_id == self.job_id).order_by(JobEvent.seq)))
        assert (job.status, job.attempt) == (self.status, self.attempt)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))  # gap-free, never doubled
        path = [JobStatus(e.data["to"]) for e in events]
        assert path[0] == JobStatus.queued and path[-1] == self.status
        assert all(can_transition(a, b) for a, b in zip(path, path[1:], strict=False)), path
        assert sum(p in FINISHED for p in path) <= 1  # a finished job never moves again


def test_job_lifecycle_compare_and_set_on_postgresql(client):  # noqa: ANN001
    run_state_machine_as_test(JobLifecycle, settings=settings(
        max_examples=20, stateful_step_count=12, deadline=None, database=None, derandomize=True,
        suppress_health_check=list(HealthCheck)))


# --- parsers fed arbitrary bytes --------------------------------------------------------------------------

FUZZ = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


def _valid_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in dataset_members(classes=2, per_class=2, size=8).items():
            zf.writestr(name, data)
    return buf.getvalue()


def _valid_tar() -> bytes:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in dataset_members(classes=2, per_class=2, size=8).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


VALID = {"zip": _valid_zip(), "tar": _valid_tar()}


@st.composite
def mutated_archives(draw: st.DrawFn) -> bytes:
    """A valid archive with a few bytes overwritten, cut short or extended: the parser's worst day."""
    data = bytearray(VALID[draw(st.sampled_from(sorted(VALID)))])
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data) + draw(st.binary(max_size=64))


def _archive_checks(path: Path) -> None:
    from app.datasets.archive import ArchiveError, ArchiveLimits, inspect_archive
    from app.datasets.processing import process_archive

    limits = ArchiveLimits(max_members=200, max_unpacked_bytes=8 * 1024**2, max_image_pixels=1_000_000)
    try:
        listing = inspect_archive(path, limits)
        process_archive(path, listing, limits=limits)
    except ArchiveError as exc:
        assert exc.code and exc.message
        json.dumps({"code": exc.code, "member": exc.member})  # it must be storable and renderable


@FUZZ
@given(data=st.one_of(st.binary(max_size=2048), mutated_archives()))
def test_archive_checks_raise_only_archive_errors(tmp_path_factory, data: bytes):
    path = tmp_path_factory.mktemp("fuzz", numbered=True) / "a"
    path.write_bytes(data)
    _archive_checks(path)


@st.composite
def safetensors_files(draw: st.DrawFn) -> bytes:
    """Headers made of JSON values of every shape, with a length prefix that may lie."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=8))
    values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                           max_size=4), max_leaves=12)
    entry = st.fixed_dictionaries({}, optional={
        "dtype": st.one_of(st.sampled_from(["F32", "U8", "BF16", "OBJ"]), values),
        "shape": st.one_of(st.lists(st.integers(-2, 2**40), max_size=3), values),
        "data_offsets": st.one_of(st.lists(st.integers(-8, 64), min_size=2, max_size=2), values)})
    header = draw(st.one_of(st.dictionaries(st.text(max_size=12), st.one_of(entry, values), max_size=4), values))
    raw = json.dumps(header, allow_nan=True).encode()
    length = draw(st.one_of(st.just(len(raw)), st.integers(0, 2**64 - 1)))
    return length.to_bytes(8, "little") + raw + draw(st.binary(max_size=128))


@FUZZ
@given(data=st.one_of(st.binary(max_size=256), safetensors_files()))
def test_safetensors_header_raises_only_header_errors(tmp_path_factory, data: bytes):
    from app.basemodels.safetensors_header import HeaderError, read_header

    path = tmp_path_factory.mktemp("st", numbered=True) / "w.safetensors"
    path.write_bytes(data)
    try:
        shapes = read_header(path)
    except HeaderError:
        return
    assert all(isinstance(k, str) and all(isinstance(d, int) and d >= 0 for d in v) for k, v in shapes.items())


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(name=st.text(alphabet=st.sampled_from("ab./\\:C \x00\x07é"), max_size=16)
       | st.binary(max_size=16).map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_an_accepted_member_name_cannot_leave_the_archive(name: str):
    from app.datasets.archive import ArchiveError, _safe_parts

    try:
        parts = _safe_parts(name)
    except ArchiveError as exc:
        assert exc.code == "unsafe_member"
        return
    assume(parts)
    joined = "/".join(parts)
    assert ".." not in parts and not joined.startswith("/") and "\\" not in joined
    assert not re.match(r"[A-Za-z]:", joined)
    assert all(ord(c) >= 32 and ord(c) != 127 for c in joined)
    assert os.path.normpath(os.path.join("/root/x", *parts)).startswith("/root/x/")
    joined.encode("utf-8")  # storable in the database as it is


def test_the_lifecycle_table_itself():
    """Finished states are absorbing; only running goes back to queued; nothing skips being claimed to finish."""
    for s in FINISHED:
        assert TRANSITIONS[s] == frozenset()
    assert {src for src, dsts in TRANSITIONS.items() if JobStatus.queued in dsts} == {JobStatus.running}
    assert JobStatus.succeeded not in TRANSITIONS[JobStatus.queued]
