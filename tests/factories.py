"""Small, separable image datasets made on the fly (no downloads)."""

import io
import random
import tarfile
import zipfile
from pathlib import Path

from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


def image_bytes(rgb: tuple[int, int, int], size: int, rng: random.Random, fmt: str = "PNG") -> bytes:
    """A noisy square of one colour."""
    img = Image.new("RGB", (size, size))
    px = img.load()
    for x in range(size):
        for y in range(size):
            px[x, y] = tuple(max(0, min(255, c + rng.randint(-40, 40))) for c in rgb)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def dataset_members(classes: int = 3, per_class: int = 12, size: int = 16, seed: int = 0,
                    split: bool = False) -> dict[str, bytes]:
    """Archive member name -> image bytes, in the flat or split layout."""
    rng = random.Random(seed)
    names = list(COLOURS)[:classes]
    out = {}
    for name in names:
        for i in range(per_class):
            data = image_bytes(COLOURS[name], size, rng)
            if split:
                part = "train" if i < per_class * 0.6 else ("val" if i < per_class * 0.8 else "test")
                out[f"{part}/{name}/{i:03d}.png"] = data
            else:
                out[f"{name}/{i:03d}.png"] = data
    return out


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path
