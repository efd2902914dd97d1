"""Read a safetensors header without torch: 8-byte little-endian length, then JSON."""

import json
import struct
from pathlib import Path
from typing import Any

MAX_HEADER = 100 * 1024 * 1024
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1}


class HeaderError(ValueError):
    """The file is not a well-formed safetensors file."""


def _count(x: object) -> bool:
    """True for a non-negative int (not a bool): what dimensions and offsets must be."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _entry(name: str, info: Any) -> tuple[list, int, int]:
    """One tensor's entry checked (well-formed, then dtype and byte range): its shape and data offsets."""
    try:
        dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
        # Hostile JSON: strings, floats, bools or lists where numbers and names belong.
        if not isinstance(dtype, str) or not isinstance(shape, list) or not all(map(_count, [*shape, start, end])):
            raise TypeError
        count = 1
        for d in shape:
            count *= d
    except (KeyError, TypeError, ValueError):
        raise HeaderError(f"tensor {name!r} has a malformed entry") from None
    if dtype not in DTYPE_BYTES or end - start != count * DTYPE_BYTES[dtype]:
        raise HeaderError(f"tensor {name!r} has a bad dtype or byte range")
    return shape, start, end


def read_header(path: Path) -> dict[str, list[int]]:
    """Tensor names to shapes, after checking that offsets tile the data exactly."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise HeaderError("file too short for a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER or n + 8 > size:
            raise HeaderError("safetensors header length is out of bounds")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise HeaderError("safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise HeaderError("safetensors header is not an object")
    header.pop("__metadata__", None)
    shapes, spans = {}, []
    for name, info in header.items():
        shape, start, end = _entry(name, info)
        shapes[name] = list(shape)
        spans.append((start, end))
    spans.sort()
    pos = 0
    for start, end in spans:
        if start != pos:
            raise HeaderError("tensor byte ranges overlap or leave gaps")
        pos = end
    if pos != size - 8 - n:
        raise HeaderError("tensor data does not match the file size")
    return shapes
