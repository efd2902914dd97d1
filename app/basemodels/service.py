"""Base weights: safetensors files checked against the catalogue and registered for jobs to start from."""

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.basemodels.safetensors_header import HeaderError, read_header
from app.domain import catalog
from app.domain.ids import new_id
from app.errors import Invalid
from app.models import BaseWeights
from app.storage import get_storage


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
