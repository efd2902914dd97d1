"""Recently used base weights held in memory: kept by sha256 in a small LRU, so consecutive jobs on the same
backbone skip reading and parsing the file."""

import threading
from collections import OrderedDict
from pathlib import Path

MAX_CACHED_WEIGHTS = 3  # state dicts kept; Lite0's is 19 MB, resnet50's 100 MB

_weights: OrderedDict[str, dict] = OrderedDict()
_lock = threading.Lock()


def load_base_weights(path: Path, sha256: str | None = None) -> dict:
    """The safetensors state dict at path; cached by sha256 when given. Treat it as read-only (copy the dict)."""
    from safetensors.torch import load_file

    if sha256 is None:
        return load_file(str(path))
    with _lock:
        if sha256 in _weights:
            _weights.move_to_end(sha256)
            return _weights[sha256]
    state = load_file(str(path))
    with _lock:
        _weights[sha256] = state
        _weights.move_to_end(sha256)
        while len(_weights) > MAX_CACHED_WEIGHTS:
            _weights.popitem(last=False)
    return state


def clear() -> None:
    """Forget every cached state dict."""
    with _lock:
        _weights.clear()
