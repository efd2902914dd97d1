"""The one reader of request bodies that a route streams itself (dataset and base-model uploads, predict images,
the worker's artifacts and checkpoints): the size cap enforced mid-stream, multipart parsed as it arrives.

FastAPI never sees these bodies (an UploadFile would have spooled the whole body before the handler ran), so
everything a hostile body can do to them is answered here: a malformed content type or multipart body is a 422
`invalid_upload`, a body past its cap a 413 `upload_too_large` the moment the cap is passed."""

import asyncio
from collections.abc import Callable, Mapping

from starlette.requests import Request
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.targets import BaseTarget

from app.errors import Invalid, TooLarge

FEED_BYTES = 1024**2  # body bytes handed to the sink per thread hop
INLINE_BYTES = 64 * 1024  # a remainder this small is cheaper to feed on the event loop than in a thread
MAX_BOUNDARY = 70  # RFC 2046


def declared_length(request: Request, *, cap: int) -> int | None:
    """The Content-Length the client declared (None if absent or not a number); 413 when it is over cap."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        return None
    if int(declared) > cap:
        raise TooLarge(f"the request body exceeds the {cap} byte limit", details={"limit": cap})
    return int(declared)


async def stream_body(request: Request, sink: Callable[[bytes], None], *, cap: int) -> int:
    """Hand the body to sink in order and return its length; 413 the moment it passes cap.

    Bytes go to sink in batches of about FEED_BYTES in a worker thread (parsing, hashing and writing block; a
    thread hop per 64 KiB socket read cost more than the work it carried), and the next batch is received while
    the previous one is fed: hashing and writing let go of the GIL. One batch at a time is in the thread, so sink
    sees the bytes in order. If anything fails, the batch in flight is waited for before the error propagates, so
    the caller never cleans up under a write still running."""
    declared_length(request, cap=cap)
    loop = asyncio.get_running_loop()
    feeding: asyncio.Future | None = None
    received, pending, pending_bytes = 0, [], 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > cap:
                raise TooLarge(f"the request body exceeds the {cap} byte limit", details={"limit": cap})
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= FEED_BYTES:
                if feeding is not None:
                    await feeding
                # One call per batch: a parser then hands a file part over in one piece, so the file and the hash
                # see one 1 MiB write instead of sixteen socket-sized ones.
                feeding = loop.run_in_executor(None, sink, b"".join(pending))
                pending, pending_bytes = [], 0
        if feeding is not None:
            await feeding
            feeding = None
        if pending_bytes > INLINE_BYTES:
            await loop.run_in_executor(None, sink, b"".join(pending))
        elif pending:
            sink(b"".join(pending))
    except BaseException:
        if feeding is not None:
            await asyncio.wait([feeding])
        raise
    return received


def multipart_parser(request: Request, *, expected: str) -> StreamingFormDataParser:
    """A streaming parser for the request's multipart/form-data body; 422 invalid_upload for any other content
    type, or one without a usable boundary. expected says in words which parts the route wants."""
    ctype = request.headers.get("content-type", "")
    kind, _, params = ctype.partition(";")
    boundary = ""
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            boundary = value.strip().strip('"')
    if kind.strip().lower() != "multipart/form-data":
        raise Invalid(f"expected multipart/form-data with {expected}", code="invalid_upload")
    if not boundary or len(boundary) > MAX_BOUNDARY:
        raise Invalid(f"the multipart/form-data content type needs a boundary of 1 to {MAX_BOUNDARY} characters",
                      code="invalid_upload")
    try:
        return StreamingFormDataParser(headers={"Content-Type": ctype})
    except Exception as exc:
        raise Invalid(f"unusable multipart content type: {exc}", code="invalid_upload") from None


async def stream_multipart(request: Request, parser: StreamingFormDataParser, targets: Mapping[str, BaseTarget],
                           *, cap: int) -> int:
    """Parse a multipart body (parser from multipart_parser) into targets by part name as it streams; 413 past
    cap, 422 invalid_upload when malformed. Errors the targets raise propagate unchanged."""
    for name, target in targets.items():
        parser.register(name, target)
    try:
        return await stream_body(request, parser.data_received, cap=cap)
    except Exception as exc:
        if type(exc).__module__.startswith("streaming_form_data"):
            raise Invalid(f"malformed multipart body: {exc}", code="invalid_upload") from None
        raise
