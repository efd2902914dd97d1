"""Background stage of a dataset: decode every image, count classes and make the seeded, stratified split.

Errors are ArchiveError (see app.datasets.archive): ``bad_image`` (Pillow cannot decode it, truncated, empty,
missing or unreadable) and ``image_too_large`` (more pixels than max_image_pixels, or data over
max_member_bytes), each naming the first bad member (name order for zip, stored order for tar).

Pillow's global Image.MAX_IMAGE_PIXELS is never changed (processing runs in threads): the per-call limit is
checked on the header size before decoding, and Pillow's own global bomb check still applies on top.
"""

import io
import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from app.datasets.archive import DEFAULT_LIMITS, SPLITS, ArchiveError, ArchiveLimits, ArchiveReader, Listing, Member

# Only the decoders for the allowed extensions: hostile bytes must never reach e.g. the EPS plugin.
_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")


@dataclass(frozen=True)
class ManifestItem:
    path: str  # member name inside the archive
    label: int  # index into ProcessResult.classes
    split: str  # "train" | "val" | "test"


@dataclass(frozen=True)
class ProcessResult:
    classes: list[str]
    class_counts: dict[str, int]
    splits: dict[str, int]  # always has train, val and test
    num_images: int
    items: list[ManifestItem]


def _formats() -> list[str]:
    Image.init()  # idempotent; a format whose plugin is missing would make Image.open raise KeyError
    return [f for f in _FORMATS if f in Image.OPEN]


def decode_image(name: str, data: bytes, limits: ArchiveLimits = DEFAULT_LIMITS) -> tuple[int, int]:
    """Fully decode one image and return its (width, height), or raise bad_image / image_too_large."""
    if not data:
        raise ArchiveError("bad_image", f"{name!r} is empty", name)
    if len(data) > limits.max_member_bytes:
        raise ArchiveError("image_too_large", f"{name!r} is over {limits.max_member_bytes} bytes", name)
    try:
        with Image.open(io.BytesIO(data), formats=_formats()) as im:
            width, height = im.size
            if width * height > limits.max_image_pixels:
                raise ArchiveError("image_too_large", f"{name!r} has {width}x{height} pixels, over "
                                   f"{limits.max_image_pixels}", name)
            if width <= 0 or height <= 0:
                raise ArchiveError("bad_image", f"{name!r} has no pixels", name)
            im.load()  # verify() alone misses truncated and corrupt pixel data
    except ArchiveError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ArchiveError("image_too_large", f"{name!r}: {e}", name) from None
    except Image.UnidentifiedImageError:  # PIL's message names the BytesIO object: a heap address, no help
        raise ArchiveError("bad_image", f"{name!r} is not an image in a format this server reads", name) from None
    except Exception as e:  # hostile bytes can make a decoder raise almost anything
        raise ArchiveError("bad_image", f"{name!r} cannot be decoded: {e}", name) from None
    return width, height


def stratified_split(members: list[Member], seed: int, val_fraction: float) -> dict[str, str]:
    """Seeded train/val assignment per member name; every class with >= 2 images gets >= 1 val image."""
    by_class: dict[str, list[str]] = {}
    for m in members:
        by_class.setdefault(m.label, []).append(m.name)
    split_of: dict[str, str] = {}
    for label, names in sorted(by_class.items()):
        names = sorted(names)
        # One generator per class (str seeds hash deterministically) so a class's split ignores the others.
        random.Random(f"{seed}:{label}").shuffle(names)
        n = len(names)
        n_val = 0 if n < 2 else min(n - 1, max(1, math.floor(n * val_fraction + 0.5)))
        for i, name in enumerate(names):
            split_of[name] = "val" if i < n_val else "train"
    return split_of


def process_archive(path: Path, listing: Listing, *, seed: int = 0, val_fraction: float = 0.2,
                    limits: ArchiveLimits = DEFAULT_LIMITS) -> ProcessResult:
    """Decode every listed image, count the classes and assign splits; raises ArchiveError on a bad member."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    with ArchiveReader(path, listing.kind, limits) as reader:
        for name, data in reader.iter_members(m.name for m in listing.members):
            decode_image(name, data, limits)
    if listing.layout == "flat":
        split_of = stratified_split(listing.members, seed, val_fraction)
    else:
        split_of = {m.name: m.split for m in listing.members}
    members = sorted(listing.members, key=lambda m: m.name)
    index = {c: i for i, c in enumerate(listing.classes)}
    items = [ManifestItem(path=m.name, label=index[m.label], split=split_of[m.name]) for m in members]
    class_counts = dict.fromkeys(listing.classes, 0)
    splits = dict.fromkeys(SPLITS, 0)
    for m in members:
        class_counts[m.label] += 1
        splits[split_of[m.name]] += 1
    return ProcessResult(classes=list(listing.classes), class_counts=class_counts, splits=splits,
                         num_images=len(items), items=items)
