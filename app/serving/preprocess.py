"""A model's recorded preprocessing, with Pillow and numpy only (the API never imports torch).

It must give the very numbers the worker's `Preprocessing` gives (torchvision's functional ops on PIL images):
Pillow does the resizing in both, so the uint8 pixels are identical, and the float32 arithmetic of the
normalisation is done in the same order. tests/worker/test_serving_preprocessing.py holds the two together."""

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

# torchvision's InterpolationMode values and the Pillow filters its PIL backend maps them to.
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


class BadImage(ValueError):
    """An uploaded file that is not an image this service can read."""


@dataclass(frozen=True)
class Preprocessing:
    """RGB, EXIF orientation, resize the shorter side to `resize`, center-crop `crop`, then normalise."""

    resize: int
    crop: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessing":
        """The model's `preprocessing`; ValueError when it is incomplete or describes something else."""
        try:
            prep = cls(resize=int(data["resize"]), crop=int(data["crop"]), interpolation=str(data["interpolation"]),
                       mean=tuple(float(x) for x in data["mean"]), std=tuple(float(x) for x in data["std"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"incomplete preprocessing definition: {exc!r}") from None
        if data.get("rgb") is False or data.get("exif_transpose") is False:
            raise ValueError("only RGB input with EXIF orientation applied is supported")
        if prep.interpolation not in RESAMPLE or len(prep.mean) != 3 or len(prep.std) != 3:
            raise ValueError(f"unsupported preprocessing {data!r}")
        if not (0 < prep.resize <= 4096 and 0 < prep.crop <= 4096) or 0.0 in prep.std:
            raise ValueError(f"unsupported preprocessing {data!r}")
        return prep

    def to_uint8(self, image: Image.Image) -> np.ndarray:
        """One PIL image → uint8 array crop×crop×3 (everything but normalisation)."""
        image = ImageOps.exif_transpose(image).convert("RGB")
        image = self._resize(image)
        return np.asarray(self._center_crop(image), dtype=np.uint8)

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        """uint8 N×H×W×3 → float32 N×3×H×W, scaled to [0, 1] and standardised per channel."""
        x = batch.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
        # The same float32 operations in the same order as the worker's torch code, so the inputs match bit for bit.
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, 3, 1, 1)
        return np.ascontiguousarray((x - mean) / std)

    def _resize(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.resize, int(self.resize * long / short)  # torchvision truncates too
        size = (new_short, new_long) if w <= h else (new_long, new_short)
        return image if size == image.size else image.resize(size, RESAMPLE[self.interpolation])

    def _center_crop(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        c = self.crop
        if c > w or c > h:  # pad with black, the extra pixel going right and bottom, as torchvision does
            left, top = max(c - w, 0) // 2, max(c - h, 0) // 2
            canvas = Image.new("RGB", (w + max(c - w, 0), h + max(c - h, 0)))
            canvas.paste(image, (left, top))
            image, (w, h) = canvas, canvas.size
        top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
        return image.crop((left, top, left + c, top + c))


def decode(data: bytes, *, max_pixels: int) -> Image.Image:
    """Bytes → a loaded PIL image; BadImage when they are not one, or one of more than max_pixels."""
    try:
        image = Image.open(io.BytesIO(data))
        w, h = image.size  # read from the header: a bomb is refused before its pixels are
        if w * h > max_pixels:
            raise BadImage(f"{w}×{h} pixels is over the {max_pixels} pixel limit")
        image.load()
        return image
    except BadImage:
        raise
    except Image.UnidentifiedImageError:  # PIL's message names the BytesIO object: a heap address, no help
        raise BadImage("not an image in a format this server reads") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BadImage(str(exc) or type(exc).__name__) from None
