"""Alias rules: a tenant's names for models, moved atomically, every move kept."""

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.models import Alias, AliasMove, Artifact, Model, utcnow
from app.models_api import service as models
from app.serving.predict import Target

MAX_RACES = 5  # compare-and-set retries when moves of one alias collide


def get_alias(*, session: Session, tenant: str, name: str) -> Alias:
    """An alias of the tenant, or 404."""
    alias = session.get(Alias, (tenant, name))
    if alias is None:
        raise NotFound(f"alias {name!r} not found", code="alias_not_found")
    return alias


def list_aliases(*, session: Session, tenant: str, limit: int, after: str | None) -> tuple[list[Alias], bool]:
    """The tenant's aliases by name; `after` continues past that name."""
    stmt = select(Alias).where(Alias.tenant == tenant)
    if after:
        stmt = stmt.where(Alias.name > after)
    rows = list(session.scalars(stmt.order_by(Alias.name).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def models_of(session: Session, aliases: list[Alias]) -> dict[str, Model]:
    """The models the aliases point to, by id, in one query."""
    ids = {a.model_id for a in aliases}
    return {m.id: m for m in session.scalars(select(Model).where(Model.id.in_(ids)))} if ids else {}


def put_alias(*, session: Session, tenant: str, name: str, model_id: str) -> tuple[Alias, bool]:
    """Point the alias at the model (creating it), recording the move; returns (alias, created).

    A compare-and-set on the alias's current model, so concurrent moves each land exactly once in the history,
    on SQLite as on PostgreSQL; the model's row lock keeps a concurrent DELETE of the model from slipping past."""
    for _ in range(MAX_RACES):
        models.get_model(session=session, tenant=tenant, model_id=model_id, lock=True)
        # The alias's row lock queues concurrent moves (PostgreSQL; SQLite writers are serial already), so only a
        # race to create it goes round again.
        current = session.scalar(select(Alias.model_id).where(Alias.tenant == tenant, Alias.name == name)
                                 .with_for_update())
        if current == model_id:
            session.rollback()  # already there: no move, no history row
            return get_alias(session=session, tenant=tenant, name=name), False
        now = utcnow()
        if current is None:
            session.add(Alias(tenant=tenant, name=name, model_id=model_id, created_at=now, updated_at=now))
            try:
                session.flush()
            except IntegrityError:  # created meanwhile by another request: go round again
                session.rollback()
                continue
        else:
            moved = session.execute(update(Alias).where(Alias.tenant == tenant, Alias.name == name,
                                                        Alias.model_id == current)
                                    .values(model_id=model_id, updated_at=now)).rowcount
            if moved != 1:  # moved or deleted meanwhile
                session.rollback()
                continue
        session.add(AliasMove(tenant=tenant, name=name, model_id=model_id, previous_model_id=current,
                              created_at=now))
        session.commit()
        return get_alias(session=session, tenant=tenant, name=name), current is None
    raise Conflict(f"alias {name!r} is being moved by other requests; retry", code="alias_busy")


def delete_alias(*, session: Session, tenant: str, name: str) -> None:
    """Remove the alias, recording the removal (model_id None) in its history."""
    gone = session.execute(delete(Alias).where(Alias.tenant == tenant, Alias.name == name)
                           .returning(Alias.model_id)).scalar()
    if gone is None:
        session.rollback()
        raise NotFound(f"alias {name!r} not found", code="alias_not_found")
    session.add(AliasMove(tenant=tenant, name=name, model_id=None, previous_model_id=gone, created_at=utcnow()))
    session.commit()


def history(*, session: Session, tenant: str, name: str, limit: int, before: int | None
            ) -> tuple[list[AliasMove], bool]:
    """The alias's moves, newest first (kept after the alias is deleted); 404 when it never existed."""
    stmt = select(AliasMove).where(AliasMove.tenant == tenant, AliasMove.name == name)
    if before is not None:
        stmt = stmt.where(AliasMove.id < before)
    rows = list(session.scalars(stmt.order_by(AliasMove.id.desc()).limit(limit + 1)))
    if not rows and before is None:
        raise NotFound(f"alias {name!r} not found", code="alias_not_found")
    return rows[:limit], len(rows) > limit


def resolve(*, session: Session, tenant: str, name: str) -> Model:
    """The model the alias points to."""
    alias = get_alias(session=session, tenant=tenant, name=name)
    return models.get_model(session=session, tenant=tenant, model_id=alias.model_id)


def get_artifact(*, session: Session, tenant: str, name: str, fmt: str) -> Artifact:
    """An artifact of the model the alias points to."""
    model = resolve(session=session, tenant=tenant, name=name)
    return models.get_artifact(session=session, tenant=tenant, model_id=model.id, fmt=fmt)


def predict_target(*, session: Session, tenant: str, name: str) -> Target:
    """What predicting with the alias's model needs."""
    model = resolve(session=session, tenant=tenant, name=name)
    return models.predict_target(session=session, tenant=tenant, model_id=model.id)
