"""The hostile input corpus: crafted dataset archives, each with the answer it must get.

Every case is built on the fly (no binary fixtures in git) against the limits in tests/security/conftest.py:
2 MiB uploads, 200 members, 3 MiB unpacked, 1,000,000 pixels per image.
A case either is refused before the response (``status`` 422 with ``code``) or is accepted and then fails in
the background (``background=True``: the dataset ends ``failed`` with ``code``).
"""

import io
import os
import stat
import struct
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.factories import dataset_members

MiB = 1024**2
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], Path]  # writes the archive into a folder, returns its path
    code: str
    member: str | None = None  # the member the error must name, when it names one
    background: bool = False  # accepted (201), then `failed` with code
    status: int = 422


def good(classes: int = 2, per_class: int = 2) -> dict[str, bytes]:
    """A small valid flat dataset to hide a bad member in."""
    return dataset_members(classes=classes, per_class=per_class, size=8)


# --- archive writers --------------------------------------------------------------------------------------

def zip_of(members: dict[str, bytes] | list[tuple[str | zipfile.ZipInfo, bytes]], *,
           method: int = zipfile.ZIP_DEFLATED) -> Callable[[Path], Path]:
    items = list(members.items()) if isinstance(members, dict) else members

    def build(folder: Path) -> Path:
        path = folder / "case.zip"
        with warnings.catch_warnings(), zipfile.ZipFile(path, "w", method) as zf:
            warnings.simplefilter("ignore")  # "Duplicate name": that is the point of some cases
            for name, data in items:
                zf.writestr(name, data)
        return path

    return build


def tar_of(members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz",
           fmt: int = tarfile.PAX_FORMAT) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / "case.tar.gz"
        with tarfile.open(path, mode, format=fmt, encoding="utf-8", errors="surrogateescape") as tf:
            for m in members:
                if isinstance(m, tarfile.TarInfo):
                    tf.addfile(m)
                else:
                    info = tarfile.TarInfo(m[0])
                    info.size = len(m[1])
                    tf.addfile(info, io.BytesIO(m[1]))
        return path

    return build


def tar_good() -> list[tarfile.TarInfo | tuple[str, bytes]]:
    return list(good().items())


def special(name: str, type_: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = type_, linkname
    if type_ in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
    return info


def raw(data: bytes, name: str = "case.zip") -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    return build


def patched_zip(members: dict[str, bytes], patch: Callable[[bytearray], None]) -> Callable[[Path], Path]:
    """A zip whose bytes are edited after writing (to forge what zipfile will not write)."""

    def build(folder: Path) -> Path:
        path = zip_of(members)(folder)
        data = bytearray(path.read_bytes())
        patch(data)
        path.write_bytes(bytes(data))
        return path

    return build


def _headers(data: bytearray) -> list[tuple[int, int]]:
    """(offset, kind) of every local (0) and central (1) file header."""
    out, i = [], 0
    while (i := data.find(b"PK", i)) >= 0:
        if data[i:i + 4] == b"PK\x03\x04":
            out.append((i, 0))
        elif data[i:i + 4] == b"PK\x01\x02":
            out.append((i, 1))
        i += 2
    return out


def forge_size(target: bytes, size: int) -> Callable[[bytearray], None]:
    """Declare another uncompressed size for the member whose name is target."""

    def patch(data: bytearray) -> None:
        for off, kind in _headers(data):
            name_at, size_at = (off + 30, off + 22) if kind == 0 else (off + 46, off + 24)
            if data[name_at:name_at + len(target)] == target:
                struct.pack_into("<I", data, size_at, size)

    return patch


def forge_flags(target: bytes, *, flag: int = 0, method: int | None = None,
                name: bytes | None = None) -> Callable[[bytearray], None]:
    """Set general-purpose flag bits, the compression method or the raw name bytes of one member."""

    def patch(data: bytearray) -> None:
        for off, kind in _headers(data):
            name_at, flags_at = (off + 30, off + 6) if kind == 0 else (off + 46, off + 8)
            if data[name_at:name_at + len(target)] == target:
                struct.pack_into("<H", data, flags_at, struct.unpack_from("<H", data, flags_at)[0] | flag)
                if method is not None:
                    struct.pack_into("<H", data, flags_at + 2, method)
                if name is not None:
                    data[name_at:name_at + len(name)] = name

    return patch


# --- images -----------------------------------------------------------------------------------------------

def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int, height: int, pixels: bytes | None = None) -> bytes:
    """An 8-bit greyscale PNG; pixels None gives a header that promises more than the tiny IDAT holds."""
    idat = zlib.compress(pixels if pixels is not None else b"\x00", 9)
    return (PNG_MAGIC + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def png_bomb(side: int) -> bytes:
    """A real decompression bomb: side x side black pixels, a few kilobytes compressed."""
    return png(side, side, (b"\x00" * (side + 1)) * side)


def with_image(name: str, data: bytes) -> Callable[[Path], Path]:
    return zip_of({**good(), name: data})


def bits(n: int) -> bytes:
    """n bytes of one random bit each: compresses about 8:1, so a few MiB unpacked fit a small upload."""
    return os.urandom(n).translate(bytes((0x30 + (b & 1)) for b in range(256)))


def pax_bomb(folder: Path) -> Path:
    """A gzipped tar whose first header is a pax header claiming 70 MiB (tarfile would read it whole)."""
    head = tarfile.TarInfo("././@PaxHeader")
    head.type, head.size = tarfile.XHDTYPE, 70 * MiB
    body = head.tobuf(tarfile.USTAR_FORMAT) + b"\x00" * (70 * MiB)
    path = folder / "case.tar.gz"
    path.write_bytes(zlib_gzip(body))
    return path


def zlib_gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, compresslevel=1)


def tar_member_bomb(folder: Path) -> Path:
    """One member declaring 8 MiB of zeros: over the 3 MiB unpacked limit, a few KiB gzipped."""
    info = tarfile.TarInfo("red/zeros.png")
    info.size = 8 * MiB
    path = folder / "case.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        tf.addfile(info, io.BytesIO(b"\x00" * info.size))
    return path


def zip_symlink(folder: Path) -> Path:
    info = zipfile.ZipInfo("red/link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zip_of([*good().items(), (info, b"/etc/passwd")])(folder)


def zip_device(folder: Path) -> Path:
    info = zipfile.ZipInfo("red/dev.png")
    info.external_attr = (stat.S_IFCHR | 0o666) << 16
    return zip_of([*good().items(), (info, b"")])(folder)


def many_members(folder: Path) -> Path:
    members = {**good(), **{f"red/{i:04d}.png": b"" for i in range(250)}}
    return zip_of(members, method=zipfile.ZIP_STORED)(folder)


def truncated_zip(folder: Path) -> Path:
    path = zip_of(good())(folder)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def non_utf8_zip() -> Callable[[Path], Path]:
    # zipfile writes "é" as UTF-8 with flag 0x800; the two bytes become 0xff 0xff, which is no UTF-8.
    members = {**good(), "red/é.png": good()["red/000.png"]}
    return patched_zip(members, forge_flags("red/é".encode(), name=b"red/\xff\xff"))


def first_png() -> bytes:
    return good()["red/000.png"]


TRUNCATED = first_png()[: len(first_png()) // 2]
CORRUPT = PNG_MAGIC + first_png()[8:40] + os.urandom(64)  # a valid IHDR, then noise
SURROGATE = b"red/\xff.png".decode("utf-8", "surrogateescape")

CASES: list[Case] = [
    # Paths that point outside the archive
    Case("zip-dotdot", zip_of({**good(), "../escape.png": b"x"}), "unsafe_member", "../escape.png"),
    Case("zip-dotdot-inner", zip_of({**good(), "red/../../escape.png": b"x"}), "unsafe_member",
         "red/../../escape.png"),
    Case("zip-absolute", zip_of({**good(), "/etc/cron.d/x.png": b"x"}), "unsafe_member", "/etc/cron.d/x.png"),
    Case("zip-windows-drive", zip_of({**good(), "C:\\x\\evil.png": b"x"}), "unsafe_member", "C:\\x\\evil.png"),
    Case("zip-windows-drive-slash", zip_of({**good(), "C:/evil/x.png": b"x"}), "unsafe_member", "C:/evil/x.png"),
    Case("zip-backslash", zip_of({**good(), "red\\..\\..\\x.png": b"x"}), "unsafe_member", "red\\..\\..\\x.png"),
    Case("tar-dotdot", tar_of([*tar_good(), ("../escape.png", b"x")]), "unsafe_member", "../escape.png"),
    Case("tar-absolute", tar_of([*tar_good(), ("/tmp/evil.png", b"x")]), "unsafe_member", "/tmp/evil.png"),
    # Links and special files
    Case("tar-symlink", tar_of([*tar_good(), special("red/evil.png", tarfile.SYMTYPE, "/etc/passwd")]),
         "unsafe_member", "red/evil.png"),
    Case("tar-symlink-relative", tar_of([*tar_good(), special("red/up.png", tarfile.SYMTYPE, "../../x")]),
         "unsafe_member", "red/up.png"),
    Case("tar-hardlink", tar_of([*tar_good(), special("red/hard.png", tarfile.LNKTYPE, "red/000.png")]),
         "unsafe_member", "red/hard.png"),
    Case("tar-char-device", tar_of([*tar_good(), special("red/null.png", tarfile.CHRTYPE)]), "unsafe_member",
         "red/null.png"),
    Case("tar-block-device", tar_of([*tar_good(), special("red/sda.png", tarfile.BLKTYPE)]), "unsafe_member",
         "red/sda.png"),
    Case("tar-fifo", tar_of([*tar_good(), special("red/pipe.png", tarfile.FIFOTYPE)]), "unsafe_member",
         "red/pipe.png"),
    Case("zip-symlink", zip_symlink, "unsafe_member", "red/link.png"),
    Case("zip-device", zip_device, "unsafe_member", "red/dev.png"),
    # Bombs and limits
    Case("zip-bomb-ratio", zip_of({**good(), "red/bomb.png": b"\x00" * (2 * MiB)}), "compression_ratio",
         "red/bomb.png"),
    Case("zip-bomb-total", zip_of({**good(), **{f"green/big{i}.png": bits(MiB) for i in range(4)}}),
         "archive_too_large", "green/big2.png"),
    Case("zip-forged-size", patched_zip({**good(), "red/big.png": b"x" * 100}, forge_size(b"red/big.png", 2**31)),
         "archive_too_large", "red/big.png"),
    Case("tar-member-bomb", tar_member_bomb, "archive_too_large", "red/zeros.png"),
    Case("tar-pax-header-bomb", pax_bomb, "archive_too_large"),
    Case("too-many-members", many_members, "too_many_members"),
    # Names
    Case("tar-non-utf8-name", tar_of([*tar_good(), (SURROGATE, first_png())], fmt=tarfile.GNU_FORMAT),
         "unsafe_member", "red/\\xff.png"),
    Case("zip-non-utf8-name", non_utf8_zip(), "not_an_archive"),
    Case("zip-control-char-name", zip_of({**good(), "red/a\x07b.png": first_png()}), "unsafe_member",
         "red/a\x07b.png"),
    Case("zip-duplicate", zip_of([*good().items(), ("red/000.png", first_png())]), "unsafe_member",
         "red/000.png"),
    Case("zip-duplicate-normalised", zip_of([*good().items(), ("red//000.png", first_png())]), "unsafe_member",
         "red//000.png"),
    Case("tar-duplicate", tar_of([*tar_good(), ("./red/000.png", first_png())]), "unsafe_member",
         "./red/000.png"),
    # Layout
    Case("single-class", zip_of(good(classes=1, per_class=4)), "single_class"),
    Case("empty-class-folder", zip_of([(zipfile.ZipInfo("blue/"), b""), *good(classes=1, per_class=3).items()]),
         "single_class"),
    Case("only-hidden-in-class", zip_of({**good(classes=1, per_class=3), "green/.DS_Store": b"x"}),
         "single_class"),
    Case("only-folders", zip_of([(zipfile.ZipInfo("red/"), b""), (zipfile.ZipInfo("green/"), b"")]),
         "empty_archive"),
    Case("non-image-extension", zip_of({**good(), "red/notes.txt": b"hello"}), "bad_layout", "red/notes.txt"),
    Case("file-outside-class", zip_of({**good(), "loose.png": first_png()}), "bad_layout", "loose.png"),
    Case("nested-too-deep", zip_of({**good(), "red/sub/x.png": first_png()}), "bad_layout", "red/sub/x.png"),
    Case("mixed-layouts", zip_of({**good(), "train/red/x.png": first_png()}), "bad_layout"),
    # Not archives
    Case("text-file", raw(b"just text, not an archive\n" * 20), "not_an_archive"),
    Case("png-not-archive", raw(first_png(), "image.png"), "not_an_archive"),
    Case("truncated-zip", truncated_zip, "not_an_archive"),
    Case("gzip-not-tar", raw(zlib_gzip(b"hello" * 1000), "x.tar.gz"), "not_an_archive"),
    Case("zip-encrypted-flag", patched_zip(good(), forge_flags(b"red/000.png", flag=0x1)), "encrypted_member",
         "red/000.png"),
    Case("zip-unknown-method", patched_zip(good(), forge_flags(b"red/000.png", method=99)), "not_an_archive",
         "red/000.png"),
    # Images: found in the background, the dataset fails naming the member
    Case("png-header-bomb", with_image("red/bomb.png", png(100_000, 100_000)), "image_too_large", "red/bomb.png",
         background=True),
    Case("png-real-bomb", with_image("red/bomb.png", png_bomb(2000)), "image_too_large", "red/bomb.png",
         background=True),
    Case("png-truncated", with_image("red/cut.png", TRUNCATED), "bad_image", "red/cut.png", background=True),
    Case("png-corrupt", with_image("red/noise.png", CORRUPT), "bad_image", "red/noise.png", background=True),
    Case("png-empty", with_image("red/empty.png", b""), "bad_image", "red/empty.png", background=True),
    Case("text-as-png", with_image("red/text.png", b"hello, I am not an image"), "bad_image", "red/text.png",
         background=True),
    Case("eps-as-jpg", with_image("red/ps.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 1 1\nshowpage\n"),
         "bad_image", "red/ps.jpg", background=True),
    Case("html-as-gif", with_image("red/page.gif", b"<html><script>alert(1)</script></html>"), "bad_image",
         "red/page.gif", background=True),
]
