"""The streamed upload: multipart parsed as it arrives, the file hashed into storage, the cap enforced mid-stream."""

from dataclasses import dataclass

import anyio
from starlette.requests import Request
from streaming_form_data.targets import BaseTarget, ValueTarget
from streaming_form_data.validators import MaxSizeValidator

from app import bodies
from app.errors import Invalid
from app.storage import BlobWriter, LocalStorage


class _BlobTarget(BaseTarget):
    """Feeds the file part into a BlobWriter."""

    def __init__(self, writer: BlobWriter):
        super().__init__()
        self.writer = writer
        self.seen = False
        self.parts = 0  # a second 'file' part would be appended to the first
        self.complete = False  # the part's closing boundary arrived

    def on_start(self) -> None:
        self.seen = True
        self.parts += 1

    def on_finish(self) -> None:
        self.complete = True

    def on_data_received(self, chunk: bytes) -> None:
        self.writer.write(chunk)


@dataclass
class Uploaded:
    writer: BlobWriter
    name: str | None
    fields: dict[str, str]  # the extra_fields' values (absent ones omitted)


async def receive_upload(request: Request, storage: LocalStorage, key: str, *, cap: int,
                         file_field: str = "file", extra_fields: tuple[str, ...] = ()) -> Uploaded:
    """Stream a multipart body into storage (uncommitted writer); 413 the moment it passes cap."""
    parser = bodies.multipart_parser(request, expected=f"a '{file_field}' part")  # 422 before anything is written
    declared = bodies.declared_length(request, cap=cap)
    if declared is not None:
        storage.ensure_room(declared)
    writer = await anyio.to_thread.run_sync(storage.writer, key)
    target, name = _BlobTarget(writer), ValueTarget(validator=MaxSizeValidator(1000))
    extras = {f: ValueTarget(validator=MaxSizeValidator(1000)) for f in extra_fields}
    try:
        await bodies.stream_multipart(request, parser, {file_field: target, "name": name, **extras}, cap=cap)
    except BaseException:
        await anyio.to_thread.run_sync(writer.abort)
        raise
    await anyio.to_thread.run_sync(writer.flush)
    problem = ("has no (non-empty) '{}' part" if not target.seen or writer.bytes == 0
               else "has more than one '{}' part" if target.parts > 1
               else "ends before its '{}' part does" if not target.complete else None)
    if problem:
        await anyio.to_thread.run_sync(writer.abort)
        raise Invalid(f"the multipart body {problem.format(file_field)}", code="invalid_upload")
    raw = name.value.decode("utf-8", "replace").strip() if name.value else None
    if raw and any(ord(c) < 32 or ord(c) == 127 for c in raw):  # PostgreSQL refuses NUL in text
        await anyio.to_thread.run_sync(writer.abort)
        raise Invalid("the dataset name must not contain control characters", code="invalid_name")
    fields = {f: v.value.decode("utf-8", "replace").strip() for f, v in extras.items() if v.value}
    return Uploaded(writer=writer, name=raw[:200] if raw else None, fields=fields)
