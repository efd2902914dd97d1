"""A worker-side, size-capped, least-recently-used cache of named tensors on disk (safetensors, no pickle).

Keys are sha256 digests of everything the tensors depend on, so an entry is never stale: a change in the
dataset, the weights, the preprocessing or this code's version makes a new key.
"""

import hashlib
import json
import os
import threading
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor

_lock = threading.Lock()
SUFFIX = ".safetensors"


def cache_key(**parts: object) -> str:
    """sha256 of the parts as canonical JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class TensorCache:
    """Files `<key>.safetensors` under one directory, evicted oldest-used first beyond max_bytes."""

    def __init__(self, root: Path, max_bytes: int):
        self.root, self.max_bytes = Path(root), int(max_bytes)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / f"{key}{SUFFIX}"

    def get(self, key: str) -> dict[str, Tensor] | None:
        """The tensors stored under key, or None; a hit counts as a use."""
        path = self._path(key)
        try:
            tensors = load_file(str(path))
            os.utime(path)  # mark as recently used
        except (FileNotFoundError, OSError):
            return None
        except Exception:  # a damaged entry (e.g. a full disk) is a miss, and goes
            path.unlink(missing_ok=True)
            return None
        return tensors

    def put(self, key: str, tensors: dict[str, Tensor]) -> None:
        """Store tensors under key (atomically), then evict beyond the cap; entries over the cap are not kept."""
        data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        size = sum(v.numel() * v.element_size() for v in data.values())
        if size > self.max_bytes:
            return
        tmp = self.root / f"{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            save_file(data, str(tmp))
            os.replace(tmp, self._path(key))
        except OSError:
            tmp.unlink(missing_ok=True)  # a cache that cannot write is only slower
            return
        with _lock:
            self._evict(keep=self._path(key))

    def _evict(self, keep: Path) -> None:
        entries = []
        for p in self.root.glob(f"*{SUFFIX}"):
            try:
                stat = p.stat()
            except FileNotFoundError:  # another process evicted it
                continue
            entries.append((stat.st_mtime, stat.st_size, p))
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            if p != keep:
                p.unlink(missing_ok=True)
                total -= size
