"""Dataset rules: create from an upload, process in the background, read, delete."""

import json
import logging
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import garbage, quotas
from app.config import get_settings
from app.datasets.archive import ArchiveError, ArchiveLimits, inspect_archive
from app.datasets.processing import process_archive
from app.db import get_sessionmaker
from app.errors import Conflict, Invalid, NotFound
from app.models import Dataset, Job
from app.pagination import page
from app.storage import BlobWriter, get_storage
from core.states import DatasetStatus, JobStatus

log = logging.getLogger(__name__)
_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataset-processing")


def limits() -> ArchiveLimits:
    """Archive limits from settings."""
    s = get_settings()
    return ArchiveLimits(max_members=s.max_members, max_unpacked_bytes=s.max_unpacked_bytes,
                         max_compression_ratio=s.max_compression_ratio, max_image_pixels=s.max_image_pixels)


def archive_key(dataset_id: str) -> str:
    return f"datasets/{dataset_id}/archive"


def manifest_key(dataset_id: str) -> str:
    return f"datasets/{dataset_id}/manifest.json"


def create_dataset(*, session: Session, tenant: str, dataset_id: str, writer: BlobWriter,
                   name: str | None) -> Dataset:
    """Check the uploaded archive's structure, store it and record it as processing (blocking: run in a thread)."""
    quotas.check_bytes(session=session, tenant=tenant, adding=writer.bytes)  # the caller aborts the writer
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-fsync") as pool:
        synced = pool.submit(writer.sync)  # the commit's slow half (fsync) runs while the structure is checked
        try:
            listing = inspect_archive(writer.tmp, limits())
        except ArchiveError as exc:
            wait([synced])
            writer.abort()
            raise Invalid(exc.message, code=exc.code, details={"member": exc.member}) from None
        synced.result()
    writer.commit()
    ds = Dataset(id=dataset_id, tenant=tenant, name=name, status=DatasetStatus.processing,
                 bytes=writer.bytes, sha256=writer.sha256, kind=listing.kind, layout=listing.layout,
                 classes=listing.classes, blob_key=archive_key(dataset_id))
    session.add(ds)
    session.commit()
    return ds


def check_upload_quota(*, tenant: str, declared_bytes: int) -> None:
    """Refuse an upload whose declared size would pass the tenant's storage quota, before streaming it."""
    with get_sessionmaker()() as session:
        quotas.check_bytes(session=session, tenant=tenant, adding=declared_bytes)


def schedule_processing(dataset_id: str) -> None:
    """Decode and split in the background, off the request path."""
    _pool.submit(_process_safely, dataset_id)


def resume_processing() -> None:
    """Re-schedule datasets left processing by a stopped API process (processing is idempotent)."""
    with get_sessionmaker()() as session:
        ids = session.scalars(select(Dataset.id).where(Dataset.status == DatasetStatus.processing)).all()
    for dataset_id in ids:
        schedule_processing(dataset_id)


def _process_safely(dataset_id: str) -> None:
    try:
        process_dataset(dataset_id)
    except Exception:
        log.exception("dataset %s: processing crashed", dataset_id)
        _finish(dataset_id, status=DatasetStatus.failed, error_code="processing_error",
                error_message="internal error while processing the dataset")


def process_dataset(dataset_id: str) -> None:
    """Decode every image, count classes, split, write the manifest, then mark ready or failed."""
    with get_sessionmaker()() as session:
        ds = session.get(Dataset, dataset_id)
        if ds is None or ds.status != DatasetStatus.processing:
            return
        path, seed = get_storage().path(ds.blob_key), 0
    try:
        listing = inspect_archive(path, limits())
        result = process_archive(path, listing, seed=seed, val_fraction=get_settings().val_fraction,
                                 limits=limits())
    except ArchiveError as exc:
        _finish(dataset_id, status=DatasetStatus.failed, error_code=exc.code, error_message=exc.message,
                error_member=exc.member)
        return
    manifest = {"classes": result.classes, "items": [asdict(i) for i in result.items]}
    get_storage().put_bytes(manifest_key(dataset_id), json.dumps(manifest).encode())
    _finish(dataset_id, status=DatasetStatus.ready, num_images=result.num_images, classes=result.classes,
            class_counts=result.class_counts, splits=result.splits, manifest_key=manifest_key(dataset_id))


def _finish(dataset_id: str, **values: object) -> None:
    with get_sessionmaker()() as session:
        session.execute(update(Dataset).where(Dataset.id == dataset_id,
                                              Dataset.status == DatasetStatus.processing).values(**values))
        session.commit()


def get_dataset(*, session: Session, tenant: str, dataset_id: str) -> Dataset:
    """A dataset of the tenant, or 404."""
    ds = session.get(Dataset, dataset_id)
    if ds is None or ds.tenant != tenant:
        raise NotFound(f"dataset {dataset_id} not found", code="dataset_not_found")
    return ds


def list_datasets(*, session: Session, tenant: str, limit: int, after: str | None) -> tuple[list[Dataset], bool]:
    """The tenant's datasets, newest first."""
    return page(session, select(Dataset).where(Dataset.tenant == tenant), Dataset.id, limit=limit, after=after)


def delete_dataset(*, session: Session, tenant: str, dataset_id: str) -> None:
    """Delete a dataset unless a queued or running job uses it."""
    ds = get_dataset(session=session, tenant=tenant, dataset_id=dataset_id)
    busy = session.scalars(select(Job.id).where(
        Job.dataset_id == dataset_id, Job.status.in_([JobStatus.queued, JobStatus.running]))).first()
    if busy:
        raise Conflict(f"dataset is in use by job {busy}", code="dataset_in_use", details={"job_id": busy})
    keys = [ds.blob_key, ds.manifest_key]
    # Finished jobs and models keep the dataset_id (and sha256) as lineage; no foreign key binds them.
    session.delete(ds)
    garbage.discard(session, keys)
    session.commit()


def dataset_paths(ds: Dataset) -> tuple[Path, Path | None]:
    """Archive and manifest paths of a dataset."""
    st = get_storage()
    return st.path(ds.blob_key), (st.path(ds.manifest_key) if ds.manifest_key else None)
