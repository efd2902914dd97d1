"""A size-capped, least-recently-used file cache keyed by sha256, so a worker downloads a dataset or weights once."""

import hashlib
import os
import threading
from pathlib import Path

from worker.client import InternalClient

_lock = threading.Lock()


class BlobCache:
    """Files named by their sha256 under one directory."""

    def __init__(self, root: Path, max_bytes: int):
        self.root, self.max_bytes = root, max_bytes
        root.mkdir(parents=True, exist_ok=True)

    def fetch(self, client: InternalClient, path: str, sha256: str) -> Path:
        """The cached file for sha256, downloading it from path when absent, verified before use."""
        dst = self.root / sha256
        with _lock:
            if dst.exists():
                os.utime(dst)  # mark as recently used
                return dst
        tmp = self.root / f"{sha256}.{os.getpid()}.dl"
        client.download(path, tmp)
        digest = hashlib.sha256()
        with open(tmp, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != sha256:
            tmp.unlink(missing_ok=True)
            raise ValueError(f"download of {path} does not match its sha256")
        with _lock:
            tmp.replace(dst)
            self._evict(keep=dst)
        return dst

    def _evict(self, keep: Path) -> None:
        files = [p for p in self.root.iterdir() if p.is_file() and len(p.name) == 64]
        total = sum(p.stat().st_size for p in files)
        for p in sorted(files, key=lambda p: p.stat().st_mtime):
            if total <= self.max_bytes:
                break
            if p != keep:
                total -= p.stat().st_size
                p.unlink(missing_ok=True)
