"""Dataset schemas."""


from pydantic import ConfigDict

from app.schemas import ErrorInfo, Out, Stamp


class DatasetRead(Out):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "ds_01jdr1x8b2n4m6q8s0t2w4y6a8", "name": "pets", "status": "ready", "error": None, "bytes": 48_213_556,
        "sha256": "9f2c" + "0" * 60, "layout": "flat", "num_images": 1200, "classes": ["cat", "dog"],
        "class_counts": {"cat": 600, "dog": 600}, "splits": {"train": 960, "val": 240, "test": 0},
        "created_at": "2026-11-28T09:01:12.000000Z"}]})

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
    created_at: Stamp

    @classmethod
    def of(cls, ds) -> "DatasetRead":  # noqa: ANN001
        err = (ErrorInfo(code=ds.error_code, message=ds.error_message or "", member=ds.error_member)
               if ds.error_code else None)
        return cls(id=ds.id, name=ds.name, status=ds.status, error=err, bytes=ds.bytes, sha256=ds.sha256,
                   layout=ds.layout, num_images=ds.num_images, classes=ds.classes,
                   class_counts=ds.class_counts, splits=ds.splits, created_at=ds.created_at)
