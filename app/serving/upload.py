"""The images of a predict request: multipart parsed as it arrives, both caps enforced mid-stream."""

from dataclasses import dataclass

from starlette.requests import Request
from streaming_form_data.targets import BaseTarget

from app import bodies
from app.errors import Invalid, TooLarge

FIELD = "files"


@dataclass
class Upload:
    name: str
    data: bytearray


class _TooMany(Exception):
    pass


class _Files(BaseTarget):
    """Collects every part named `files` (each a separate image) in memory, at most `limit` of them."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.files: list[Upload] = []
        self.finished = 0

    def on_start(self) -> None:
        if len(self.files) == self.limit:
            raise _TooMany
        self.files.append(Upload(_display_name(self.multipart_filename, len(self.files)), bytearray()))

    def on_data_received(self, chunk: bytes) -> None:
        self.files[-1].data += chunk

    def on_finish(self) -> None:
        self.finished += 1


def _display_name(raw: str | None, index: int) -> str:
    """The client's file name, made safe to echo back; files[i] when it sent none."""
    name = "".join(c for c in (raw or "") if c.isprintable())[:200]
    return name or f"{FIELD}[{index}]"


async def receive_images(request: Request, *, max_images: int, max_bytes: int) -> list[Upload]:
    """The uploaded files in order; 413 the moment the body passes max_bytes or brings one file too many."""
    parser = bodies.multipart_parser(request, expected=f"one or more '{FIELD}' parts")
    target = _Files(max_images)
    try:
        await bodies.stream_multipart(request, parser, {FIELD: target}, cap=max_bytes)
    except _TooMany:
        raise TooLarge(f"at most {max_images} images per request", code="too_many_images",
                       details={"limit": max_images}) from None
    if not target.files:
        raise Invalid(f"the multipart body has no '{FIELD}' part", code="invalid_upload")
    if target.finished < len(target.files):
        raise Invalid(f"the multipart body ends before its last '{FIELD}' part does", code="invalid_upload")
    return target.files
