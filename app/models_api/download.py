"""Artifact downloads for pollers and resumers: the sha256 as a strong ETag, 304 on If-None-Match, Range."""

from starlette.datastructures import Headers
from starlette.responses import FileResponse, JSONResponse, MalformedRangeHeader, RangeNotSatisfiable, Response

from app.models import Artifact
from app.storage import get_storage

MEDIA = {"safetensors": "application/octet-stream", "onnx": "application/octet-stream", "config": "application/json"}
EXTENSION = {"safetensors": "safetensors", "onnx": "onnx", "config": "json"}


class ArtifactFile(FileResponse):
    """Starlette's FileResponse (single and multiple ranges, If-Range), but a Range it cannot parse is ignored
    and the whole file sent, as RFC 9110 allows, rather than answered with a plain-text 400."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader:
            return []


def etag_matches(header: str | None, sha256: str) -> bool:
    """If-None-Match semantics: `*`, or any listed tag equal to ours under weak comparison."""
    if not header:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or f'"{sha256}"' in [t.removeprefix("W/") for t in tags]


def artifact_response(art: Artifact, *, name: str, request_headers: Headers) -> Response:
    """The artifact's file, a 206 part of it, 304 when the client has it already, or 416 for a range beyond it."""
    etag = f'"{art.sha256}"'
    # Authenticated per tenant: caches may keep it for this client only, and must ask again before reusing it.
    headers = {"ETag": etag, "X-Checksum-SHA256": art.sha256, "Cache-Control": "private, no-cache"}
    if etag_matches(request_headers.get("if-none-match"), art.sha256):  # evaluated before Range (RFC 9110 13.2.2)
        return Response(status_code=304, headers=headers)
    path = get_storage().path(art.blob_key)
    wanted, if_range = request_headers.get("range"), request_headers.get("if-range")
    if wanted and (if_range is None or if_range == etag):
        size = path.stat().st_size
        try:
            ArtifactFile._parse_range_header(wanted, size)
        except RangeNotSatisfiable:
            body = {"error": {"code": "range_not_satisfiable", "message": f"the artifact has {size} bytes",
                              "details": {"bytes": size}}}
            return JSONResponse(body, status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    return ArtifactFile(path, media_type=MEDIA.get(art.format, "application/octet-stream"),
                        filename=f"{name}.{EXTENSION.get(art.format, 'bin')}", headers=headers)
