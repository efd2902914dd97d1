"""Model rules: read, list, artifacts, what a prediction needs."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import garbage
from app.errors import Conflict, NotFound
from app.models import Alias, Artifact, Model
from app.pagination import page
from app.serving.predict import Target
from app.serving.preprocess import Preprocessing
from app.storage import get_storage


def get_model(*, session: Session, tenant: str, model_id: str, lock: bool = False) -> Model:
    """A model of the tenant, or 404; lock: hold its row (PostgreSQL) until the transaction ends."""
    m = session.get(Model, model_id, with_for_update=lock)
    if m is None or m.tenant != tenant:
        raise NotFound(f"model {model_id} not found", code="model_not_found")
    return m


def artifacts_of(session: Session, model_ids: list[str]) -> dict[str, list[Artifact]]:
    """Artifacts per model, in one query."""
    out: dict[str, list[Artifact]] = {i: [] for i in model_ids}
    for a in session.scalars(select(Artifact).where(Artifact.model_id.in_(model_ids)).order_by(Artifact.format)):
        out[a.model_id].append(a)
    return out


def list_models(*, session: Session, tenant: str, limit: int, after: str | None) -> tuple[list[Model], bool]:
    """The tenant's models, newest first."""
    return page(session, select(Model).where(Model.tenant == tenant), Model.id, limit=limit, after=after)


def get_artifact(*, session: Session, tenant: str, model_id: str, fmt: str) -> Artifact:
    """One artifact of a model, or 404."""
    get_model(session=session, tenant=tenant, model_id=model_id)
    art = session.scalars(select(Artifact).where(Artifact.model_id == model_id, Artifact.format == fmt)).first()
    if art is None:
        raise NotFound(f"model {model_id} has no {fmt} artifact", code="artifact_not_found")
    return art


def delete_model(*, session: Session, tenant: str, model_id: str) -> None:
    """Delete a model and its artifacts (the job keeps its history; an alias must be moved first)."""
    # The row lock orders this against an alias move to the model (which takes the same lock): either the move
    # sees the model gone, or this sees the alias.
    m = get_model(session=session, tenant=tenant, model_id=model_id, lock=True)
    referrers = alias_names(session, model_id)
    if referrers:
        raise Conflict(f"alias {referrers[0]!r} points to this model", code="model_in_use",
                       details={"aliases": referrers})
    arts = list(session.scalars(select(Artifact).where(Artifact.model_id == model_id)))
    keys = [a.blob_key for a in arts]
    for a in arts:
        session.delete(a)
    session.delete(m)
    garbage.discard(session, keys)
    session.commit()


def alias_names(session: Session, model_id: str) -> list[str]:
    """Names of the aliases pointing to a model, sorted."""
    return list(session.scalars(select(Alias.name).where(Alias.model_id == model_id).order_by(Alias.name)))


def predict_target(*, session: Session, tenant: str, model_id: str) -> Target:
    """The model's ONNX file and preprocessing; 409 onnx_unavailable when it has no ONNX artifact (yet)."""
    m = get_model(session=session, tenant=tenant, model_id=model_id)
    art = session.scalars(select(Artifact).where(Artifact.model_id == model_id, Artifact.format == "onnx")).first()
    if art is None:
        raise Conflict(f"model {model_id} has no ONNX artifact (the export runs after the job, or failed)",
                       code="onnx_unavailable")
    try:
        prep = Preprocessing.from_dict(m.preprocessing or m.config.get("preprocessing") or {})
    except ValueError as exc:
        raise Conflict(f"model {model_id} cannot be served: {exc}", code="preprocessing_unavailable") from None
    return Target(model_id=m.id, classes=list(m.classes), preprocessing=prep,
                  onnx_path=get_storage().path(art.blob_key), onnx_sha256=art.sha256)
