"""A warm worker: the heavy imports done, and recently used base weights held in memory, before a job arrives.

`warm_up()` is for the worker process's start (Celery's worker_process_init); it builds no model and holds
no accelerator memory. Base weights are kept by sha256 in a small LRU, so consecutive jobs on the same
backbone skip reading and parsing the file.
"""

import threading
from collections import OrderedDict
from pathlib import Path

MAX_CACHED_WEIGHTS = 3  # state dicts kept; Lite0's is 19 MB, resnet50's 100 MB

_weights: OrderedDict[str, dict] = OrderedDict()
_lock = threading.Lock()


def warm_up() -> None:
    """Import torch, torchvision and the training engine, and run one tiny convolution (kernel set-up)."""
    import torch
    import torchmetrics.functional.classification  # noqa: F401  (slow to import: 1-2 s)
    import torchvision  # noqa: F401
    from efficientnet_lite_pytorch import EfficientNet  # noqa: F401

    import worker.training.recipe  # noqa: F401

    with torch.inference_mode():
        torch.nn.functional.conv2d(torch.zeros(1, 3, 8, 8), torch.zeros(4, 3, 3, 3))


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
