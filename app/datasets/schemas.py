"""Dataset schemas."""

from datetime import datetime

from app.schemas import ErrorInfo, Out


class DatasetRead(Out):
    id: str
    name: str | None
    status: str
    error: ErrorInfo | None
    bytes: int
    sha256: str
    layout: str
    num_images: int | None
    classes: list[str] | None
    class_counts: dict[str, int] | None
    splits: dict[str, int] | None
    created_at: datetime

    @classmethod
    def of(cls, ds) -> "DatasetRead":  # noqa: ANN001
        err = (ErrorInfo(code=ds.error_code, message=ds.error_message or "", member=ds.error_member)
               if ds.error_code else None)
        return cls(id=ds.id, name=ds.name, status=ds.status, error=err, bytes=ds.bytes, sha256=ds.sha256,
                   layout=ds.layout, num_images=ds.num_images, classes=ds.classes,
                   class_counts=ds.class_counts, splits=ds.splits, created_at=ds.created_at)
