"""Model schemas."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from app.models import Artifact, Model
from app.schemas import Out


class ArtifactRead(BaseModel):
    format: str
    bytes: int
    sha256: str
    meta: dict[str, Any] | None = None


class ModelRead(Out):
    id: str
    job_id: str
    dataset_id: str
    arch: str
    classes: list[str]
    metrics: dict[str, Any]
    preprocessing: dict[str, Any]
    lineage: dict[str, Any]
    config: dict[str, Any]
    artifacts: list[ArtifactRead]
    created_at: datetime

    @classmethod
    def of(cls, m: Model, artifacts: list[Artifact]) -> "ModelRead":
        return cls(id=m.id, job_id=m.job_id, dataset_id=m.dataset_id, arch=m.arch, classes=m.classes,
                   metrics=m.metrics, preprocessing=m.preprocessing, lineage=m.lineage, config=m.config,
                   artifacts=[ArtifactRead(format=a.format, bytes=a.bytes, sha256=a.sha256, meta=a.meta)
                              for a in artifacts],
                   created_at=m.created_at)
