"""Datasets decoded once into uint8 tensors, and the one preprocessing that train, eval and predict share."""

import io
import tarfile
import zipfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps
from torch import Tensor
from torchvision.transforms import InterpolationMode

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Preprocessing:
    """RGB, EXIF orientation, resize the shorter side to `resize`, center-crop `crop`, then normalise."""

    resize: int
    crop: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def for_image_size(cls, defaults: dict, image_size: int) -> "Preprocessing":
        """A job's pipeline: the arch's interpolation and statistics, resize and crop both image_size."""
        # Resize == crop keeps the whole shorter side; only the longer side's margins are cut.
        return cls(resize=image_size, crop=image_size, interpolation=defaults["interpolation"],
                   mean=tuple(defaults["mean"]), std=tuple(defaults["std"]))

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        """Read back what to_dict wrote (the model config's `preprocessing`)."""
        return cls(resize=data["resize"], crop=data["crop"], interpolation=data["interpolation"],
                   mean=tuple(data["mean"]), std=tuple(data["std"]))

    def to_dict(self) -> dict:
        """The full description stored with a model."""
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std), "rgb": True,
                "exif_transpose": True}

    def to_uint8(self, image: Image.Image) -> Tensor:
        """One PIL image → uint8 tensor 3×crop×crop (everything but normalisation)."""
        image = ImageOps.exif_transpose(image).convert("RGB")
        image = TF.resize(image, self.resize, interpolation=InterpolationMode(self.interpolation))
        return TF.pil_to_tensor(TF.center_crop(image, self.crop))

    def normalize(self, batch: Tensor) -> Tensor:
        """uint8 N×3×H×W → float, scaled to [0, 1] and standardised per channel, on the batch's device."""
        mean = torch.tensor(self.mean, device=batch.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, 3, 1, 1)
        return (batch.float().div_(255) - mean) / std


@dataclass
class Split:
    """A split in memory: uint8 images N×3×S×S (or cached backbone features) and int64 labels N."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)


def _member_reader(archive: Path) -> tuple[Callable[[str], bytes], Callable[[], None]]:
    # Members are read by name, never extracted: paths in the archive never touch the file system.
    if zipfile.is_zipfile(archive):
        zf = zipfile.ZipFile(archive)
        return zf.read, zf.close
    tf = tarfile.open(archive)  # noqa: SIM115 -- kept open for reads; the caller gets tf.close
    members = {m.name: m for m in tf.getmembers()}  # one scan; getmember() rescans every call

    def read(name: str) -> bytes:
        member = members.get(name)
        f = tf.extractfile(member) if member is not None and member.isfile() else None
        if f is None:
            raise ValueError(f"archive member {name!r} is missing or not a regular file")
        return f.read()

    return read, tf.close


def _decode(data: bytes, name: str, prep: Preprocessing) -> Tensor:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return prep.to_uint8(image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode image {name!r}: {exc}") from exc


def _decode_all(blobs: Iterable[tuple[str, bytes]], prep: Preprocessing, threads: int) -> list[Tensor]:
    # Pillow releases the GIL while decoding and resizing, so threads use every core.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda item: _decode(item[1], item[0], prep), blobs))


def load_splits(archive: Path, manifest: dict, prep: Preprocessing, *, threads: int = 1) -> dict[str, Split]:
    """Decode every manifest item once; returns the splits that have items."""
    num_classes = len(manifest["classes"])
    read, close = _member_reader(Path(archive))
    try:
        by_split: dict[str, list[tuple[str, bytes, int]]] = {}
        for item in manifest["items"]:
            if item["split"] not in SPLITS:
                raise ValueError(f"item {item['path']!r} has unknown split {item['split']!r}")
            if not 0 <= item["label"] < num_classes:
                raise ValueError(f"item {item['path']!r} has label {item['label']}, "
                                 f"outside 0..{num_classes - 1}")
            by_split.setdefault(item["split"], []).append((item["path"], read(item["path"]), item["label"]))
    finally:
        close()
    splits = {}
    for name in SPLITS:
        items = by_split.get(name)
        if items:
            images = _decode_all(((path, data) for path, data, _ in items), prep, threads)
            splits[name] = Split(torch.stack(images), torch.tensor([label for *_, label in items]))
    return splits
