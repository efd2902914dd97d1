"""Base weights: safetensors files checked against the catalogue and registered for jobs to start from."""

from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app import garbage
from app.basemodels.safetensors_header import HeaderError, read_header
from app.errors import Conflict, Invalid, NotFound
from app.models import BaseWeights, Job
from app.pagination import page
from app.storage import BlobWriter, get_storage
from core import catalog
from core.ids import new_id
from core.states import JobStatus


def check_against_catalog(arch: str, shapes: dict[str, list[int]]) -> None:
    """Raise Invalid naming the first tensor whose name or shape differs from the architecture's."""
    entry = catalog.get_arch(arch)
    if entry is None:
        raise Invalid(f"unknown arch {arch!r}", code="unknown_arch")
    expected: dict[str, list[int]] = entry["weights"]
    for name, shape in expected.items():
        if name not in shapes:
            raise Invalid(f"missing tensor {name!r} for {arch}", code="weights_mismatch",
                          details={"tensor": name})
        if list(shapes[name]) != list(shape):
            raise Invalid(f"tensor {name!r} has shape {shapes[name]}, {arch} expects {shape}",
                          code="weights_mismatch", details={"tensor": name})
    # BatchNorm's step counter is no weight: a plain state_dict() carries it, the catalogue does not.
    extra = sorted(n for n in set(shapes) - set(expected) if not n.endswith("num_batches_tracked"))
    if extra:
        raise Invalid(f"unexpected tensor {extra[0]!r} for {arch}", code="weights_mismatch",
                      details={"tensor": extra[0]})


def register_file(*, session: Session, arch: str, src: Path, source: str, tenant: str | None,
                  name: str | None = None) -> BaseWeights:
    """Validate a safetensors file and register it; imagenet weights replace the arch's previous ones."""
    try:
        shapes = read_header(src)
    except HeaderError as exc:
        raise Invalid(str(exc), code="invalid_safetensors") from None
    check_against_catalog(arch, shapes)
    bm_id = new_id("bm")
    key = f"base_models/{bm_id}.safetensors"
    size, sha = get_storage().put_file(key, src)
    row = BaseWeights(id=bm_id, tenant=tenant, arch=arch, source=source, name=name, sha256=sha, bytes=size,
                      blob_key=key)
    session.add(row)
    session.commit()
    return row


def imagenet_weights(*, session: Session, arch: str) -> BaseWeights | None:
    """The newest imported ImageNet weights of arch."""
    return session.scalars(select(BaseWeights).where(
        BaseWeights.arch == arch, BaseWeights.source == "imagenet", BaseWeights.tenant.is_(None)
    ).order_by(BaseWeights.id.desc())).first()


def register_upload(*, session: Session, tenant: str, arch: str, writer: BlobWriter, name: str | None) -> BaseWeights:
    """Check an uploaded safetensors file (still uncommitted in writer) against the catalogue and register it."""
    try:
        if catalog.get_arch(arch) is None:
            raise Invalid(f"unknown arch {arch!r}; supported: {', '.join(catalog.arch_names())}", code="unknown_arch")
        try:
            shapes = read_header(writer.tmp)
        except HeaderError as exc:
            raise Invalid(f"not a safetensors file: {exc}", code="invalid_safetensors") from None
        check_against_catalog(arch, shapes)
    except BaseException:
        writer.abort()
        raise
    row = BaseWeights(id=writer.key.rsplit("/", 1)[-1].removesuffix(".safetensors"), tenant=tenant, arch=arch,
                      source="upload", name=name, sha256=writer.sha256, bytes=writer.bytes, blob_key=writer.key)
    writer.commit()
    session.add(row)
    session.commit()
    return row


def get_base_model(*, session: Session, tenant: str, bm_id: str) -> BaseWeights:
    """A base model of the tenant or a global one, else 404."""
    row = session.get(BaseWeights, bm_id)
    if row is None or row.tenant not in (None, tenant):
        raise NotFound(f"base model {bm_id} not found", code="base_model_not_found")
    return row


def list_base_models(*, session: Session, tenant: str, limit: int, after: str | None) -> tuple[list[BaseWeights], bool]:
    """The tenant's own base models and the global (imported) ones, newest first."""
    stmt = select(BaseWeights).where(or_(BaseWeights.tenant == tenant, BaseWeights.tenant.is_(None)))
    return page(session, stmt, BaseWeights.id, limit=limit, after=after)


def delete_base_model(*, session: Session, tenant: str, bm_id: str) -> None:
    """Delete the tenant's own base model unless a queued or running job starts from it."""
    row = get_base_model(session=session, tenant=tenant, bm_id=bm_id)
    if row.tenant is None:
        raise NotFound(f"base model {bm_id} not found", code="base_model_not_found")  # global: not the tenant's
    busy = session.scalars(select(Job.id).where(Job.weights_id == bm_id,
                                                Job.status.in_([JobStatus.queued, JobStatus.running]))).first()
    if busy:
        raise Conflict(f"base model is in use by job {busy}", code="base_model_in_use", details={"job_id": busy})
    session.delete(row)
    garbage.discard(session, [row.blob_key])
    session.commit()
