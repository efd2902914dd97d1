"""Parameters, bodies and answers the model routes share with the alias routes, as OpenAPI shows them."""

from typing import Annotated, Any

from fastapi import Header, Path, Query

from app.models_api.schemas import MODEL_EXAMPLE
from app.openapi import BINARY, multipart

ModelId = Annotated[str, Path(examples=[MODEL_EXAMPLE["id"]])]
FORMAT = Annotated[str, Path(examples=["safetensors", "onnx", "config"],
                             description="safetensors (always), onnx (where the export succeeded) or config")]
TopK = Annotated[int, Query(ge=1, le=100, description="labels per image, most probable first")]
# Bounded, so that a header cannot cost more than a glance.
IfNoneMatch = Annotated[str | None, Header(max_length=4096, description="the ETag you hold: 304 while it is current",
                                           examples=[f'"{MODEL_EXAMPLE["artifacts"][2]["sha256"]}"'])]
RangeHeader = Annotated[str | None, Header(max_length=1000, examples=["bytes=1048576-"],
                                           description="resume or split a download (206); unparseable: ignored")]
IfRange = Annotated[str | None, Header(max_length=200, description="send the Range only while this ETag is current")]
PREDICT_DESCRIPTION = (
    "Send one or more images as multipart parts named `files`. Each is decoded, turned upright by its EXIF "
    "orientation, converted to RGB, resized, center-cropped and normalised exactly as the model's `preprocessing` "
    "says (as in training), then run through the model's ONNX artifact. At most TAAS_PREDICT_MAX_IMAGES images and "
    "TAAS_PREDICT_MAX_BYTES bytes per request; the answer lists each image's top-k labels in upload order.")
PREDICT_BODY = multipart({"files": {"type": "array", "items": BINARY,
                                    "description": "one or more images (JPEG, PNG, WebP, ...), one part each"}},
                         required=["files"], example={"files": ["<kitchen.jpg bytes>"]})
DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file; its sha256 in ETag and X-Checksum-SHA256",
          "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                      "application/json": {"schema": {"type": "object"}, "example": MODEL_EXAMPLE["config"]}}},
    206: {"description": "The requested range (multipart/byteranges for several)",
          "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                      "application/json": {"schema": {}},
                      "multipart/byteranges": {"schema": {"type": "string", "format": "binary"}}}},
    304: {"description": "If-None-Match names the current ETag: you have the file already"},
}
