"""Dataset archives: structural refusals, both layouts in zip and tar, decoding and the seeded split."""

import io
import random
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from app.datasets.archive import (
    DEFAULT_LIMITS,
    ArchiveError,
    ArchiveLimits,
    ArchiveReader,
    inspect_archive,
    open_member,
)
from app.datasets.processing import process_archive


def img(color: int = 0, fmt: str = "PNG", size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (color % 256, 0, 0)).save(buf, format=fmt)
    return buf.getvalue()


def flat(classes=("cat", "dog"), n: int = 3, prefix: str = "") -> dict[str, bytes]:
    return {f"{prefix}{c}/{i}.png": img(i) for c in classes for i in range(n)}


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, files: dict[str, bytes], mode: str = "w:gz", extra=()) -> Path:
    """Write files, then the hand-made TarInfo entries in extra (with no data)."""
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for ti in extra:
            tf.addfile(ti)
    return path


def tar_entry(name: str, type_: bytes, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.size = type_, linkname, size
    return ti


def refused(path: Path, code: str, member: str | None, limits=DEFAULT_LIMITS) -> ArchiveError:
    with pytest.raises(ArchiveError) as exc:
        inspect_archive(path, limits)
    assert (exc.value.code, exc.value.member) == (code, member), exc.value.message
    return exc.value


# --- refusals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_links_are_refused(tmp_path, type_):
    path = make_tar(tmp_path / "a.tgz", flat(), extra=[tar_entry("cat/link.png", type_, "/etc/passwd")])
    err = refused(path, "unsafe_member", "cat/link.png")
    assert "cat/link.png" in err.message


def test_zip_symlink_is_refused(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in flat().items():
            zf.writestr(name, data)
        info = zipfile.ZipInfo("dog/link.png")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    refused(path, "unsafe_member", "dog/link.png")


@pytest.mark.parametrize("name", ["/etc/cat/1.png", "C:/data/cat/1.png", "cat\\1.png"])
def test_absolute_paths_are_refused(tmp_path, name):
    refused(make_zip(tmp_path / "a.zip", {**flat(), name: img()}), "unsafe_member", name)


def test_absolute_path_in_tar_is_refused(tmp_path):
    refused(make_tar(tmp_path / "a.tar", {**flat(), "/tmp/x.png": img()}, "w"), "unsafe_member", "/tmp/x.png")


@pytest.mark.parametrize("name", ["cat/../../evil.png", "../dog/1.png"])
def test_dotdot_is_refused(tmp_path, name):
    refused(make_tar(tmp_path / "a.tgz", {**flat(), name: img()}), "unsafe_member", name)


@pytest.mark.parametrize("type_", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_tar_special_files_are_refused(tmp_path, type_):
    refused(make_tar(tmp_path / "a.tgz", flat(), extra=[tar_entry("cat/dev.png", type_)]),
            "unsafe_member", "cat/dev.png")


def test_undecodable_tar_name_is_refused(tmp_path):
    path = make_tar(tmp_path / "a.tar", {**flat(), "cat/\udcff.png": img()}, "w")
    refused(path, "unsafe_member", "cat/\\xff.png")  # shown escaped, so it can go into JSON


def test_file_named_dot_is_refused(tmp_path):
    refused(make_tar(tmp_path / "a.tar", {**flat(), "./": b""}, "w"), "unsafe_member", "./")


def test_duplicate_member_is_refused(tmp_path):
    path = make_tar(tmp_path / "a.tar", flat(), "w", extra=[tar_entry("cat/0.png", tarfile.REGTYPE)])
    refused(path, "unsafe_member", "cat/0.png")


def test_too_many_members(tmp_path):
    path = make_zip(tmp_path / "a.zip", flat(n=2))  # cat/0, cat/1, dog/0, dog/1
    refused(path, "too_many_members", "dog/1.png", ArchiveLimits(max_members=3))


def test_unpacked_total_too_large(tmp_path):
    files = flat(n=2)
    limit = sum(len(d) for d in files.values()) - 1
    refused(make_zip(tmp_path / "a.zip", files), "archive_too_large", "dog/1.png",
            ArchiveLimits(max_unpacked_bytes=limit))


def test_member_too_large_is_refused_before_its_data_is_read(tmp_path):
    # The header declares a terabyte that is not even there: the declared size alone must refuse it.
    huge = tar_entry("cat/huge.png", tarfile.REGTYPE, size=10**12)
    path = make_tar(tmp_path / "a.tgz", flat(), extra=[huge])
    refused(path, "archive_too_large", "cat/huge.png")


def test_zip_bomb_member(tmp_path):
    path = make_zip(tmp_path / "a.zip", {**flat(), "cat/zeros.png": bytes(5 * 1024**2)})
    refused(path, "compression_ratio", "cat/zeros.png")


def test_tar_gz_bomb_overall_ratio(tmp_path):
    path = make_tar(tmp_path / "a.tgz", {**flat(), "dog/zeros.png": bytes(5 * 1024**2)})
    refused(path, "compression_ratio", "dog/zeros.png")


def test_small_compressible_member_is_exempt_from_ratio(tmp_path):
    files = {**flat(), "cat/flat.bmp": img(fmt="BMP", size=(400, 400))}  # ~480 KB of one colour
    assert len(inspect_archive(make_zip(tmp_path / "a.zip", files)).members) == 7


def test_huge_pax_header_is_refused(tmp_path):
    path = tmp_path / "a.tgz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("cat/0.png")
        ti.pax_headers = {"comment": "x" * 200_000}
        tf.addfile(ti, io.BytesIO(b""))
    refused(path, "archive_too_large", None, ArchiveLimits(max_member_bytes=50_000))


def test_encrypted_zip_member(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in flat().items():
            zf.writestr(name, data)
        zf.getinfo("dog/2.png").flag_bits |= 0x1  # written to the central directory on close
    refused(path, "encrypted_member", "dog/2.png")


@pytest.mark.parametrize("content", [random.Random(0).randbytes(4096), b"just some text\n" * 100, b"",
                                     b"PK\x03\x04 truncated", b"\x1f\x8b not really gzip"])
@pytest.mark.parametrize("filename", ["data.zip", "data.tar.gz", "data.bin"])
def test_not_an_archive(tmp_path, content, filename):
    path = tmp_path / filename
    path.write_bytes(content)
    refused(path, "not_an_archive", None)


def test_gzip_that_is_not_a_tar(tmp_path):
    import gzip

    path = tmp_path / "a.tar.gz"
    path.write_bytes(gzip.compress(b"hello " * 1000))
    refused(path, "not_an_archive", None)


def test_top_level_file(tmp_path):
    refused(make_zip(tmp_path / "a.zip", {**flat(), "top.png": img()}), "bad_layout", "top.png")


def test_non_image_file(tmp_path):
    refused(make_zip(tmp_path / "a.zip", {**flat(), "cat/notes.txt": b"hi"}), "bad_layout", "cat/notes.txt")


def test_nested_too_deep(tmp_path):
    refused(make_zip(tmp_path / "a.zip", {**flat(), "cat/sub/1.png": img()}), "bad_layout", "cat/sub/1.png")


def test_mixed_layout(tmp_path):
    files = {**flat(prefix="train/"), **flat(prefix="val/"), "bird/1.png": img()}
    refused(make_zip(tmp_path / "a.zip", files), "bad_layout", "bird/1.png")


def test_split_without_val(tmp_path):
    files = {**flat(prefix="train/"), **flat(prefix="test/")}
    err = refused(make_tar(tmp_path / "a.tgz", files), "bad_layout", None)
    assert "val/" in err.message


def test_val_class_not_in_train(tmp_path):
    files = {**flat(prefix="train/"), **flat(("cat", "dog", "fox"), prefix="val/")}
    refused(make_zip(tmp_path / "a.zip", files), "bad_layout", "val/fox/0.png")


def test_single_class(tmp_path):
    refused(make_zip(tmp_path / "a.zip", flat(("cat",))), "single_class", None)


def test_empty_archive(tmp_path):
    files = {"cat/": b"", "__MACOSX/cat/._0.png": b"x", ".DS_Store": b"x"}
    refused(make_zip(tmp_path / "a.zip", files), "empty_archive", None)
    refused(make_zip(tmp_path / "b.zip", {}), "empty_archive", None)


# --- accepted archives -------------------------------------------------------------------------------


def test_flat_zip(tmp_path):
    listing = inspect_archive(make_zip(tmp_path / "a.zip", flat(n=2)))
    assert (listing.kind, listing.layout, listing.classes) == ("zip", "flat", ["cat", "dog"])
    assert [(m.name, m.split, m.label) for m in listing.members] == [
        ("cat/0.png", None, "cat"), ("cat/1.png", None, "cat"), ("dog/0.png", None, "dog"),
        ("dog/1.png", None, "dog")]
    assert listing.unpacked_bytes == sum(m.size for m in listing.members)


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_flat_tar(tmp_path, mode):
    listing = inspect_archive(make_tar(tmp_path / "a.dat", flat(), mode))  # the name says nothing
    assert (listing.kind, listing.layout, listing.classes, len(listing.members)) == ("tar", "flat",
                                                                                      ["cat", "dog"], 6)


@pytest.mark.parametrize("maker", [make_zip, make_tar])
def test_split_layout_with_test(tmp_path, maker):
    files = {**flat(n=3, prefix="train/"), **flat(n=1, prefix="val/"), **flat(("cat",), n=1, prefix="test/")}
    listing = inspect_archive(maker(tmp_path / "a", files))
    assert (listing.layout, listing.classes) == ("split", ["cat", "dog"])
    splits = [m.split for m in listing.members]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (6, 2, 1)
    assert {m.label for m in listing.members if m.split == "test"} == {"cat"}


def test_mac_and_hidden_entries_are_ignored(tmp_path):
    files = {**flat(), "__MACOSX/cat/._0.png": b"junk", ".DS_Store": b"junk", "cat/.DS_Store": b"junk",
             ".hidden/x.txt": b"junk", "cat/": b""}
    listing = inspect_archive(make_zip(tmp_path / "a.zip", files))
    assert len(listing.members) == 6 and listing.classes == ["cat", "dog"]


@pytest.mark.parametrize("maker", [make_zip, make_tar])
def test_single_wrapping_folder_is_stripped(tmp_path, maker):
    files = {**flat(prefix="mydata/"), "__MACOSX/mydata/cat/._0.png": b"junk"}
    listing = inspect_archive(maker(tmp_path / "a", files))
    assert (listing.layout, listing.classes) == ("flat", ["cat", "dog"])
    assert listing.members[0].name == "mydata/cat/0.png"  # names stay as stored, for reading back
    split = {**flat(prefix="mydata/train/"), **flat(prefix="mydata/val/")}
    assert inspect_archive(maker(tmp_path / "b", split)).layout == "split"


def test_dot_slash_prefix_from_tar_c(tmp_path):
    dot = tar_entry(".", tarfile.DIRTYPE)  # `tar -C dir -c .` starts with the directory "." itself
    listing = inspect_archive(make_tar(tmp_path / "a.tgz", flat(prefix="./"), extra=[dot]))
    assert listing.classes == ["cat", "dog"] and listing.members[0].name == "./cat/0.png"


# --- reading members ------------------------------------------------------------------------------------


@pytest.mark.parametrize("maker", [make_zip, make_tar])
def test_read_members_by_name(tmp_path, maker):
    files = flat()
    path = maker(tmp_path / "a", files)
    kind = inspect_archive(path).kind
    assert open_member(path, kind, "dog/2.png") == files["dog/2.png"]
    with ArchiveReader(path, kind) as reader:
        assert reader.read("cat/1.png") == files["cat/1.png"]
        assert dict(reader.iter_members(files)) == files
        with pytest.raises(ArchiveError) as exc:
            reader.read("cat/missing.png")
    assert (exc.value.code, exc.value.member) == ("bad_image", "cat/missing.png")


# --- processing -------------------------------------------------------------------------------------------


def test_process_counts_and_split(tmp_path):
    path = make_zip(tmp_path / "a.zip", flat(("ant", "bee", "cat"), n=5))
    listing = inspect_archive(path)
    result = process_archive(path, listing, seed=1)
    assert result.classes == ["ant", "bee", "cat"] and result.num_images == 15
    assert result.class_counts == {"ant": 5, "bee": 5, "cat": 5}
    assert result.splits == {"train": 12, "val": 3, "test": 0}
    assert [i.path for i in result.items] == sorted(i.path for i in result.items)
    assert all(result.classes[i.label] == i.path.split("/")[0] for i in result.items)


def test_split_is_stratified(tmp_path):
    files = {**flat(("a",), n=2), **flat(("b",), n=3), **flat(("c",), n=20), **flat(("d",), n=1)}
    path = make_tar(tmp_path / "a.tgz", files)
    result = process_archive(path, inspect_archive(path), val_fraction=0.2)
    val = [i for i in result.items if i.split == "val"]
    per_class = {c: sum(result.classes[i.label] == c for i in val) for c in "abcd"}
    assert per_class == {"a": 1, "b": 1, "c": 4, "d": 0}


def test_split_is_deterministic_per_seed(tmp_path):
    path = make_zip(tmp_path / "a.zip", flat(n=20))
    listing = inspect_archive(path)
    runs = [process_archive(path, listing, seed=s).items for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_split_layout_keeps_folders(tmp_path):
    files = {**flat(n=3, prefix="train/"), **flat(n=1, prefix="val/"), **flat(n=2, prefix="test/")}
    path = make_zip(tmp_path / "a.zip", files)
    result = process_archive(path, inspect_archive(path))
    assert result.splits == {"train": 6, "val": 2, "test": 4}
    assert result.class_counts == {"cat": 6, "dog": 6}
    assert all(i.path.startswith(i.split + "/") for i in result.items)


def _noise(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.frombytes("RGB", (32, 32), random.Random(1).randbytes(32 * 32 * 3)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("bad", [img()[:40], b"", b"not an image at all", _noise("PNG")[:-400],
                                 _noise("JPEG")[:-300], b"%!PS-Adobe-3.0 EPSF-3.0\n"],
                         ids=["header-only", "empty", "text", "truncated-png", "truncated-jpeg", "eps"])
def test_corrupt_image(tmp_path, bad):
    path = make_zip(tmp_path / "a.zip", {**flat(), "dog/1.png": bad})
    with pytest.raises(ArchiveError) as exc:
        process_archive(path, inspect_archive(path))
    assert (exc.value.code, exc.value.member) == ("bad_image", "dog/1.png")


def test_other_formats_decode(tmp_path):
    files = {"cat/a.jpg": img(fmt="JPEG"), "cat/b.bmp": img(fmt="BMP"), "dog/c.gif": img(fmt="GIF"),
             "dog/d.TIFF": img(fmt="TIFF"), "dog/e.webp": img(fmt="WEBP")}
    path = make_tar(tmp_path / "a.tgz", files)
    assert process_archive(path, inspect_archive(path)).num_images == 5


def _big_png() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, format="PNG")  # 1 bit/pixel: cheap to make, ~12 KB
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_image_over_pixel_limit(tmp_path):
    path = make_zip(tmp_path / "a.zip", {**flat(), "cat/big.png": _big_png()})
    listing = inspect_archive(path)
    with pytest.raises(ArchiveError) as exc:
        process_archive(path, listing, limits=ArchiveLimits(max_image_pixels=1_000_000))
    assert (exc.value.code, exc.value.member) == ("image_too_large", "cat/big.png")
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's global is left alone


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_counts_as_too_large(tmp_path):
    path = make_zip(tmp_path / "a.zip", {**flat(), "cat/big.png": _big_png()})
    with pytest.raises(ArchiveError) as exc:
        process_archive(path, inspect_archive(path), limits=ArchiveLimits(max_image_pixels=10**9))
    assert (exc.value.code, exc.value.member) == ("image_too_large", "cat/big.png")


def test_member_data_over_limit_when_processing(tmp_path):
    path = make_zip(tmp_path / "a.zip", flat())
    listing = inspect_archive(path)
    with pytest.raises(ArchiveError) as exc:
        process_archive(path, listing, limits=ArchiveLimits(max_member_bytes=10))
    assert (exc.value.code, exc.value.member) == ("image_too_large", "cat/0.png")
