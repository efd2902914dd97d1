"""Response schemas shared across resources."""

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, field_serializer

T = TypeVar("T")


class Out(BaseModel):
    """Base of response models: RFC 3339 UTC timestamps."""

    model_config = ConfigDict(from_attributes=True)

    @field_serializer("*", when_used="json")
    def _ts(self, v: Any) -> Any:
        if isinstance(v, datetime):
            return v.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return v


class Page(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool


class ErrorInfo(BaseModel):
    code: str
    message: str
    member: str | None = None
