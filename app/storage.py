"""Blob storage behind one small interface: a local directory now, an object store later."""

import errno
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from app.config import get_settings
from app.errors import InsufficientStorage
from core.ids import new_id

CHECK_EVERY = 8 * 1024 * 1024


class BlobWriter:
    """Writes a blob to a temporary file, hashing as it goes; commit() moves it into place atomically."""

    def __init__(self, storage: "LocalStorage", key: str):
        self.storage, self.key = storage, key
        self.tmp = storage.root / "tmp" / new_id("art")
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self._f: BinaryIO = open(self.tmp, "wb")  # noqa: SIM115
        self._hash = hashlib.sha256()
        self.bytes = 0

    def write(self, chunk: bytes) -> None:
        # Keep a reserve free on the volume (checked every few MiB): a full disk answers 507, never half a file.
        if self.bytes // CHECK_EVERY != (self.bytes + len(chunk)) // CHECK_EVERY or self.bytes == 0:
            self.storage.ensure_room(CHECK_EVERY)
        try:
            self._f.write(chunk)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise InsufficientStorage("the storage volume is full") from None
            raise
        self._hash.update(chunk)
        self.bytes += len(chunk)

    def flush(self) -> None:
        """Make the bytes written so far readable through self.tmp."""
        self._f.flush()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def sync(self) -> None:
        """Flush and fsync the bytes written so far (a commit after it has nothing left to write)."""
        self._f.flush()
        os.fsync(self._f.fileno())

    def commit(self) -> Path:
        """Flush, fsync and rename into place; returns the final path."""
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        dst = self.storage.path(self.key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, dst)
        return dst

    def abort(self) -> None:
        """Drop the partial file."""
        if not self._f.closed:
            self._f.close()
        self.tmp.unlink(missing_ok=True)


class LocalStorage:
    """Blobs as files under one root; keys are relative paths we generate, never user input."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """Filesystem path of key."""
        assert ".." not in key and not key.startswith("/"), key
        return self.root / key

    def writer(self, key: str) -> BlobWriter:
        """A streaming, hashing, atomic writer for key."""
        return BlobWriter(self, key)

    def put_file(self, key: str, src: Path) -> tuple[int, str]:
        """Copy src into key; returns (bytes, sha256)."""
        w = self.writer(key)
        try:
            with open(src, "rb") as f:
                while chunk := f.read(1 << 20):
                    w.write(chunk)
            w.commit()
        except BaseException:
            w.abort()
            raise
        return w.bytes, w.sha256

    def put_bytes(self, key: str, data: bytes) -> tuple[int, str]:
        """Store data under key; returns (bytes, sha256)."""
        w = self.writer(key)
        w.write(data)
        w.commit()
        return w.bytes, w.sha256

    def iter_chunks(self, key: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        """Stream a blob."""
        with open(self.path(key), "rb") as f:
            while data := f.read(chunk):
                yield data

    def delete(self, key: str) -> None:
        """Remove a blob if present."""
        self.path(key).unlink(missing_ok=True)

    def free_bytes(self) -> int:
        """Free space on the storage volume."""
        return shutil.disk_usage(self.root).free

    def ensure_room(self, incoming: int) -> None:
        """507 insufficient_storage unless incoming bytes fit above the configured reserve."""
        if self.free_bytes() - incoming < get_settings().min_free_bytes:
            raise InsufficientStorage("not enough free storage; try again later or ask an operator",
                                      details={"reserve_bytes": get_settings().min_free_bytes})


_storage: LocalStorage | None = None


def get_storage() -> LocalStorage:
    """The process-wide storage."""
    global _storage
    if _storage is None:
        _storage = LocalStorage(get_settings().storage_dir)
    return _storage
