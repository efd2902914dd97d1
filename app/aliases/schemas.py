"""Alias schemas."""


from pydantic import BaseModel, ConfigDict, Field

from app.models_api.schemas import MODEL_EXAMPLE, ModelRead
from app.schemas import Out, Stamp

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"


class AliasPut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"model_id": MODEL_EXAMPLE["id"]}]})

    model_id: str = Field(max_length=40, description="a model of your tenant")


class AliasRead(Out):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "production", "model_id": MODEL_EXAMPLE["id"],
        "sha256": MODEL_EXAMPLE["artifacts"][2]["sha256"], "model": MODEL_EXAMPLE,
        "created_at": "2026-11-20T08:00:00.000000Z", "updated_at": "2026-11-28T09:12:03.000000Z"}]})

    name: str
    model_id: str
    sha256: str | None = Field(description="sha256 of the model's safetensors file")
    model: ModelRead
    created_at: Stamp
    updated_at: Stamp


class AliasPage(BaseModel):
    data: list[AliasRead]
    has_more: bool


class AliasMoveRead(Out):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 7, "model_id": MODEL_EXAMPLE["id"], "previous_model_id": "model_01jdq8v1w0bph9d2n0x1r5fq3a",
        "created_at": "2026-11-28T09:12:03.000000Z"}]})

    id: int
    model_id: str | None = Field(description="where the alias pointed after this move; null: it was deleted")
    previous_model_id: str | None
    created_at: Stamp


class AliasHistory(BaseModel):
    data: list[AliasMoveRead]
    has_more: bool
