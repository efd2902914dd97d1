"""The streamed upload: multipart parsed as it arrives, the file hashed into storage, the cap enforced mid-stream."""

import asyncio
from dataclasses import dataclass

import anyio
from starlette.requests import Request
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.targets import BaseTarget, ValueTarget
from streaming_form_data.validators import MaxSizeValidator

from app.errors import InsufficientStorage, Invalid, TooLarge
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


FEED_BYTES = 1024**2  # body bytes handed to the parser per thread hop


def _feed(parser: StreamingFormDataParser, chunks: list[bytes]) -> None:
    # One call for the batch: the parser then hands the file part over in one piece, so the file and the hash
    # see one 1 MiB write instead of sixteen socket-sized ones.
    parser.data_received(b"".join(chunks))


@dataclass
class Uploaded:
    writer: BlobWriter
    name: str | None
    fields: dict[str, str]  # the extra_fields' values (absent ones omitted)


async def receive_upload(request: Request, storage: LocalStorage, key: str, *, cap: int,
                         file_field: str = "file", extra_fields: tuple[str, ...] = ()) -> Uploaded:
    """Stream a multipart body into storage (uncommitted writer); 413 the moment it passes cap."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise Invalid("expected multipart/form-data with a 'file' part", code="invalid_upload")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        if int(declared) > cap:
            raise TooLarge(f"upload exceeds the {cap} byte limit", details={"limit": cap})
        storage.ensure_room(int(declared))
    writer = await anyio.to_thread.run_sync(storage.writer, key)
    target, name = _BlobTarget(writer), ValueTarget(validator=MaxSizeValidator(1000))
    feeding: asyncio.Future | None = None  # the batch being fed in a worker thread
    try:
        parser = StreamingFormDataParser(headers={"Content-Type": ctype})
        parser.register(file_field, target)
        parser.register("name", name)
        extras = {f: ValueTarget(validator=MaxSizeValidator(1000)) for f in extra_fields}
        for field, value in extras.items():
            parser.register(field, value)
        received, pending, pending_bytes = 0, [], 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > cap:
                raise TooLarge(f"upload exceeds the {cap} byte limit", details={"limit": cap})
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= FEED_BYTES:
                # Parsing, hashing and writing block: keep them off the event loop, one thread hop per batch
                # (a hop per socket read, 64 KiB, cost more than the work it carried). The next batch is
                # received while this one is fed (hashing and writing let go of the GIL); one batch at a time
                # in the thread, so the parser sees the bytes in order.
                if feeding is not None:
                    await feeding
                feeding = asyncio.get_running_loop().run_in_executor(None, _feed, parser, pending)
                pending, pending_bytes = [], 0
        if feeding is not None:
            await feeding
        if pending:
            await anyio.to_thread.run_sync(_feed, parser, pending)
    except BaseException as exc:
        if feeding is not None:  # never abort the file under a batch still being written
            await asyncio.wait([feeding])
        await anyio.to_thread.run_sync(writer.abort)
        if isinstance(exc, (TooLarge, Invalid, InsufficientStorage)):
            raise
        if isinstance(exc, Exception) and type(exc).__module__.startswith("streaming_form_data"):
            raise Invalid(f"malformed multipart body: {exc}", code="invalid_upload") from None
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
