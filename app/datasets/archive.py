"""Structural checks of uploaded dataset archives, and reading members by name without extracting anything.

Archives are zip or tar (plain, .gz, .bz2, .xz), detected by content. Every byte is hostile: nothing is ever
written to disk (no extractall), and limits are checked on declared sizes before any data is read.

ArchiveError codes raised by inspect_archive (``member`` names the offending entry when there is one):
  not_an_archive     neither zip nor tar by content, a corrupt archive, or an unsupported zip compression
  unsafe_member      symlink or hardlink (zip: S_IFLNK in external_attr), absolute path, drive letter or
                     backslash, a `..` component, device/fifo/other non-regular entry, a name with control
                     characters or invalid UTF-8 (member then shows bytes escaped), or a duplicate name
  too_many_members   more entries (of any type) than max_members
  archive_too_large  declared unpacked total over max_unpacked_bytes, or one member over max_member_bytes
  compression_ratio  unpacked/compressed over max_compression_ratio: per zip member of >= 1 MiB, and overall
                     once the unpacked total reaches 1 MiB (a smaller archive cannot be a bomb)
  encrypted_member   an encrypted zip entry
  bad_layout         a file outside a class folder, mixed flat/split folders, a split layout without train/
                     or val/, folders nested too deep, a non-image file, or a val/test class not in train/
  single_class       fewer than 2 classes
  empty_archive      no images
Raised by ArchiveReader / open_member (and so by processing.process_archive), besides not_an_archive:
  bad_image          member missing, not a regular file, or its data unreadable (CRC, truncation)
  image_too_large    member data over max_member_bytes

``__MACOSX/``, hidden files/folders (a component starting with ``.``), Thumbs.db, desktop.ini and directory
entries are ignored; a single common top folder wrapping the whole layout is stripped.
"""

import bz2
import gzip
import lzma
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import chain
from pathlib import Path, PurePosixPath

MiB = 1024**2
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
SPLITS = ("train", "val", "test")
RATIO_EXEMPT_BYTES = 1 * MiB
_IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
_DRIVE = re.compile(r"^[A-Za-z]:")
_GZIP, _BZIP2, _XZ = b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"
# Errors that mean "corrupt bytes" from zipfile, tarfile and the decompressors.
_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, ValueError, zlib.error, lzma.LZMAError,
            struct.error, NotImplementedError, RuntimeError)


class ArchiveError(Exception):
    """A refused archive or member: a stable ``code``, a human ``message`` and the ``member`` if any."""

    def __init__(self, code: str, message: str, member: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.member = code, message, member


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int = 100_000
    max_unpacked_bytes: int = 20 * 1024**3
    max_member_bytes: int = 64 * MiB
    max_compression_ratio: float = 200.0
    max_image_pixels: int = 50_000_000


DEFAULT_LIMITS = ArchiveLimits()  # frozen, so one shared instance is a safe default argument


@dataclass(frozen=True)
class Member:
    name: str  # path inside the archive, exactly as stored
    split: str | None  # "train"/"val"/"test" in the split layout, None in the flat one
    label: str  # class folder name
    size: int  # declared unpacked size


@dataclass(frozen=True)
class Listing:
    kind: str  # "zip" | "tar"
    layout: str  # "flat" | "split"
    classes: list[str]  # sorted
    members: list[Member]  # images only, sorted by name
    unpacked_bytes: int  # declared total of every regular entry, ignored ones included


@dataclass(frozen=True)
class _Entry:
    name: str
    type: str  # file | dir | link | special | encrypted | unsupported
    size: int
    packed: int | None  # compressed size where the format declares one (zip)


def detect_kind(path: Path) -> str:
    """Return "zip" or "tar" judged by the file's content, else raise not_an_archive."""
    with open(path, "rb") as f:
        head = f.read(tarfile.BLOCKSIZE)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith((_GZIP, _BZIP2, _XZ)):
        return "tar"  # whether the decompressed stream is a tar is checked when it is opened
    try:  # a plain tar header carries a checksum, which random bytes and text fail
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
        return "tar"
    except tarfile.TarError:
        raise ArchiveError("not_an_archive", "the file is neither a zip nor a tar archive") from None


def inspect_archive(path: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> Listing:
    """Structural checks only (no image decoding); returns the images and classes or raises ArchiveError."""
    path = Path(path)
    kind = detect_kind(path)
    packed_total = max(path.stat().st_size, 1)
    with ExitStack() as stack:
        if kind == "zip":
            entries: Iterable[_Entry] = _zip_entries(_open_zip(path, stack))
        else:
            entries = _tar_entries(_open_tar(path, limits, stack))
        files, total = _scan(entries, limits, packed_total)
    layout, classes, members = _layout(files)
    return Listing(kind=kind, layout=layout, classes=classes, members=members, unpacked_bytes=total)


def _open_zip(path: Path, stack: ExitStack) -> zipfile.ZipFile:
    """Open a zip whose closing is registered on stack."""
    try:
        return stack.enter_context(zipfile.ZipFile(path))
    except _CORRUPT as e:
        raise ArchiveError("not_an_archive", f"corrupt zip archive: {e}") from None


def _open_tar(path: Path, limits: ArchiveLimits, stack: ExitStack) -> tarfile.TarFile:
    """Open a (possibly compressed) tar behind a _Bounded reader; all closing is registered on stack."""
    raw = stack.enter_context(open(path, "rb"))  # noqa: SIM115 -- closed by the ExitStack
    head = raw.read(6)
    raw.seek(0)
    try:
        if head.startswith(_GZIP):
            stream = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        elif head.startswith(_BZIP2):
            stream = stack.enter_context(bz2.BZ2File(raw))
        elif head.startswith(_XZ):
            stream = stack.enter_context(lzma.LZMAFile(raw))  # noqa: SIM115 -- closed by the ExitStack
        else:
            stream = raw
        # Headers are not in the declared sizes, so allow some slack per member on top of the data.
        max_pos = limits.max_unpacked_bytes + limits.max_members * 8 * 1024 + 16 * MiB
        bounded = _Bounded(stream, max_pos, limits.max_member_bytes + 64 * 1024)
        return stack.enter_context(tarfile.open(fileobj=bounded, mode="r:"))
    except _CORRUPT as e:
        raise ArchiveError("not_an_archive", f"corrupt tar archive: {e}") from None


class _Bounded:
    """Caps how far a (decompressed) tar stream may be read and how much one read may ask for.

    tarfile reads pax and GNU long-name headers whole into memory before we see the member, so a hostile
    header could otherwise ask for gigabytes of decompressed zeros."""

    def __init__(self, stream, max_pos: int, max_read: int):
        self._stream, self._max_pos, self._max_read = stream, max_pos, max_read

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self._max_read:
            raise ArchiveError("archive_too_large", "a tar header or member is larger than allowed")
        data = self._stream.read(n)
        self._check()
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        pos = self._stream.seek(offset, whence)
        self._check()
        return pos

    def tell(self) -> int:
        return self._stream.tell()

    def _check(self) -> None:
        if self._stream.tell() > self._max_pos:
            raise ArchiveError("archive_too_large", "the unpacked tar stream is larger than allowed")


def _zip_entries(zf: zipfile.ZipFile) -> Iterator[_Entry]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        fmt = stat.S_IFMT(mode)
        if stat.S_ISLNK(mode):
            type_ = "link"
        elif info.is_dir() or fmt == stat.S_IFDIR:
            type_ = "dir"
        elif fmt not in (0, stat.S_IFREG):  # 0: no unix mode recorded (e.g. made on Windows)
            type_ = "special"
        elif info.flag_bits & 0x1:
            type_ = "encrypted"
        elif info.compress_type not in _ZIP_METHODS:
            type_ = "unsupported"
        else:
            type_ = "file"
        yield _Entry(info.filename, type_, info.file_size, info.compress_size)


def _tar_entries(tf: tarfile.TarFile) -> Iterator[_Entry]:
    for ti in _iter_tar(tf, "not_an_archive"):
        if ti.issym() or ti.islnk():
            type_ = "link"
        elif ti.isdir():
            type_ = "dir"
        elif ti.isreg() and not ti.issparse():
            type_ = "file"
        else:
            type_ = "special"
        yield _Entry(ti.name, type_, ti.size, None)


def _iter_tar(tf: tarfile.TarFile, code: str) -> Iterator[tarfile.TarInfo]:
    """Yield the members tf has not read yet, one header at a time, so limits apply before data is skipped."""
    while True:
        try:
            ti = tf.next()
        except _CORRUPT as e:
            raise ArchiveError(code, f"corrupt tar stream: {e}") from None
        if ti is None:
            return
        yield ti


_REFUSALS = {
    "link": ("unsafe_member", "is a symbolic or hard link"),
    "special": ("unsafe_member", "is not a regular file or directory (device, fifo or other)"),
    "encrypted": ("encrypted_member", "is encrypted"),
    "unsupported": ("not_an_archive", "uses an unsupported zip compression method"),
}


def _scan(entries: Iterable[_Entry], limits: ArchiveLimits, packed_total: int):
    """Apply the per-entry safety checks and limits; return (kept files as (name, parts, size), total)."""
    files: list[tuple[str, list[str], int]] = []
    seen: set[str] = set()
    count = total = 0
    for e in entries:
        count += 1
        if count > limits.max_members:
            raise ArchiveError("too_many_members", f"more than {limits.max_members} entries", e.name)
        parts = _safe_parts(e.name)
        if e.type in _REFUSALS:
            code, why = _REFUSALS[e.type]
            raise ArchiveError(code, f"{e.name!r} {why}", e.name)
        if e.type == "dir":
            continue
        if not parts:
            raise ArchiveError("unsafe_member", f"{e.name!r} is a file without a name", e.name)
        if e.size > limits.max_member_bytes:
            raise ArchiveError("archive_too_large", f"{e.name!r} unpacks to {e.size} bytes, over "
                               f"{limits.max_member_bytes}", e.name)
        total += e.size
        if total > limits.max_unpacked_bytes:
            raise ArchiveError("archive_too_large", f"unpacks to over {limits.max_unpacked_bytes} bytes",
                               e.name)
        ratio = limits.max_compression_ratio
        if e.packed is not None and e.size >= RATIO_EXEMPT_BYTES and e.size > ratio * max(e.packed, 1):
            raise ArchiveError("compression_ratio", f"{e.name!r} compresses more than {ratio:g}:1", e.name)
        if total >= RATIO_EXEMPT_BYTES and total > ratio * packed_total:
            raise ArchiveError("compression_ratio", f"the archive compresses more than {ratio:g}:1", e.name)
        key = "/".join(parts)
        if key in seen:  # the name read later could be another entry than the one checked
            raise ArchiveError("unsafe_member", f"{e.name!r} appears more than once", e.name)
        seen.add(key)
        if not any(p in _IGNORED_NAMES or p.startswith(".") for p in parts):
            files.append((e.name, parts, e.size))
    return files, total


def _safe_parts(name: str) -> list[str]:
    """Split a member name into path components, refusing anything that could point outside the archive."""
    try:  # tarfile keeps undecodable bytes as surrogates, which would break JSON and the database later
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise ArchiveError("unsafe_member", f"{shown!r} is not valid UTF-8", shown) from None
    if not name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ArchiveError("unsafe_member", f"{name!r} has an empty name or control characters", name)
    if name.startswith("/") or "\\" in name or _DRIVE.match(name):
        raise ArchiveError("unsafe_member", f"{name!r} is an absolute path or uses backslashes", name)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError("unsafe_member", f"{name!r} has a '..' component", name)
    return parts  # empty for "." or "./", which only a directory may be


def _layout(files: list[tuple[str, list[str], int]]) -> tuple[str, list[str], list[Member]]:
    """Recognise the flat (class/img) or split (train/class/img, val/..., test/...) layout."""
    if not files:
        raise ArchiveError("empty_archive", "the archive contains no images")
    first = files[0][1][0]
    if first.lower() not in SPLITS and all(len(p) >= 3 and p[0] == first for _, p, _ in files):
        files = [(n, p[1:], s) for n, p, s in files]  # one folder wrapping it all, as when zipping a folder
    files.sort()
    is_split = [p[0].lower() in SPLITS for _, p, _ in files]
    if any(is_split) and not all(is_split):
        odd = next(n for (n, _, _), s in zip(files, is_split, strict=True) if not s)
        raise ArchiveError("bad_layout", f"{odd!r}: split folders (train/val/test) mixed with class folders",
                           odd)
    split = all(is_split)
    depth = 3 if split else 2
    expected = "split/class/image" if split else "class/image"
    members = []
    for name, parts, size in files:
        if len(parts) != depth:
            where = "is not inside a class folder" if len(parts) < depth else "is nested too deep"
            raise ArchiveError("bad_layout", f"{name!r} {where}; expected {expected}", name)
        if PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
            allowed = " ".join(sorted(IMAGE_EXTENSIONS))
            raise ArchiveError("bad_layout", f"{name!r} is not an image (allowed: {allowed})", name)
        split_name = parts[0].lower() if split else None
        members.append(Member(name=name, split=split_name, label=parts[-2], size=size))
    classes = _split_classes(members) if split else sorted({m.label for m in members})
    if len(classes) < 2:
        raise ArchiveError("single_class", f"at least 2 classes are needed, found {classes}")
    return ("split" if split else "flat"), classes, members


def _split_classes(members: list[Member]) -> list[str]:
    """The split layout's classes (train/'s), after checking train/ and val/ exist and no class is missing in train/."""
    present = {m.split for m in members}
    for needed in ("train", "val"):
        if needed not in present:
            raise ArchiveError("bad_layout", f"a split layout needs a {needed}/ folder")
    classes = sorted({m.label for m in members if m.split == "train"})
    for m in members:
        if m.label not in classes:
            raise ArchiveError("bad_layout", f"class {m.label!r} in {m.split}/ is not in train/", m.name)
    return classes


class ArchiveReader:
    """Reads members by name from an archive kept open for many reads; use it as a context manager.

    ``read(name)`` is random access (cheap for zip; a compressed tar must be decompressed up to the member).
    ``iter_members(names)`` yields ``(name, data)`` in archive order, one sequential pass for a tar.
    Not thread-safe: use one reader per thread."""

    def __init__(self, path: Path, kind: str, limits: ArchiveLimits = DEFAULT_LIMITS):
        if kind not in ("zip", "tar"):
            raise ValueError(f"unknown archive kind {kind!r}")
        self.kind, self.limits = kind, limits
        self._stack = ExitStack()
        try:
            self._zip = _open_zip(Path(path), self._stack) if kind == "zip" else None
            self._tar = _open_tar(Path(path), limits, self._stack) if kind == "tar" else None
        except BaseException:
            self._stack.close()
            raise
        self._seen: dict[str, tarfile.TarInfo] = {}  # tar members read so far, in archive order

    def __enter__(self) -> "ArchiveReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the archive."""
        self._stack.close()

    def read(self, name: str) -> bytes:
        """Return one member's data, or raise bad_image (missing/corrupt) or image_too_large."""
        if self._zip is not None:
            try:
                return self._read_zip(self._zip.getinfo(name))
            except KeyError:
                raise ArchiveError("bad_image", f"{name!r} is not in the archive", name) from None
        if name not in self._seen:
            for ti in self._scan_tar():
                if ti.name == name:
                    break
        if name not in self._seen:
            raise ArchiveError("bad_image", f"{name!r} is not in the archive", name)
        return self._read_tar(self._seen[name])

    def iter_members(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Yield (name, data) for each wanted member; raises bad_image for the first one missing."""
        wanted = set(names)
        if self._zip is not None:
            for name in sorted(wanted):
                yield name, self.read(name)
            return
        done: set[str] = set()
        for ti in chain(list(self._seen.values()), self._scan_tar()):
            if ti.name in wanted and ti.name not in done:
                done.add(ti.name)
                yield ti.name, self._read_tar(ti)
        if missing := sorted(wanted - done):
            raise ArchiveError("bad_image", f"{missing[0]!r} is not in the archive", missing[0])

    def _scan_tar(self) -> Iterator[tarfile.TarInfo]:
        for ti in _iter_tar(self._tar, "bad_image"):
            self._seen[ti.name] = ti
            yield ti

    def _too_large(self, name: str, size: int) -> None:
        if size > self.limits.max_member_bytes:
            limit = self.limits.max_member_bytes
            raise ArchiveError("image_too_large", f"{name!r} is over {limit} bytes", name)

    def _read_zip(self, info: zipfile.ZipInfo) -> bytes:
        self._too_large(info.filename, info.file_size)
        try:  # zipfile stops at the declared size and checks the CRC at the end
            with self._zip.open(info) as f:
                data = f.read(self.limits.max_member_bytes + 1)
        except _CORRUPT as e:
            raise ArchiveError("bad_image", f"cannot read {info.filename!r}: {e}", info.filename) from None
        self._too_large(info.filename, len(data))
        return data

    def _read_tar(self, ti: tarfile.TarInfo) -> bytes:
        if not ti.isreg() or ti.issparse():  # extractfile would follow links to other members
            raise ArchiveError("bad_image", f"{ti.name!r} is not a regular file", ti.name)
        self._too_large(ti.name, ti.size)
        try:
            data = self._tar.extractfile(ti).read(ti.size)
        except _CORRUPT as e:
            raise ArchiveError("bad_image", f"cannot read {ti.name!r}: {e}", ti.name) from None
        if len(data) != ti.size:
            raise ArchiveError("bad_image", f"{ti.name!r} is truncated", ti.name)
        return data


def open_member(path: Path, kind: str, name: str, limits: ArchiveLimits = DEFAULT_LIMITS) -> bytes:
    """Read one member's data by name; use ArchiveReader for many reads."""
    with ArchiveReader(path, kind, limits) as reader:
        return reader.read(name)
