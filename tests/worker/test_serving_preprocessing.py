"""The API's numpy preprocessing (app.serving) gives the worker's torchvision one's numbers, bit for bit."""

import io
import random

import numpy as np
import pytest
import torch
from PIL import Image

from app.serving.preprocess import RESAMPLE
from app.serving.preprocess import Preprocessing as Serving
from worker.training.data import Preprocessing as Training

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def noisy(size: tuple[int, int], mode: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    if mode == "P":
        return rgb.quantize(16)
    return rgb.convert(mode)


def with_orientation(image: Image.Image, orientation: int) -> Image.Image:
    """A lossless round trip (PNG, or TIFF for CMYK) carrying an EXIF orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, format="TIFF" if image.mode == "CMYK" else "PNG", exif=exif)
    return Image.open(io.BytesIO(buf.getvalue()))


CASES = [  # (width, height, mode, orientation, resize, crop, interpolation)
    (37, 23, "RGB", 1, 16, 16, "bilinear"),
    (23, 37, "RGBA", 6, 16, 16, "bicubic"),
    (64, 64, "L", 3, 32, 32, "bilinear"),
    (40, 17, "P", 8, 24, 20, "nearest"),
    (17, 40, "CMYK", 5, 24, 24, "lanczos"),
    (32, 32, "RGB", 1, 32, 32, "bicubic"),  # already the right size: no resize at all
    (9, 7, "LA", 2, 8, 12, "bilinear"),  # the crop is larger than the resized image: black padding
    (301, 199, "RGB", 7, 224, 224, "bicubic"),
    (50, 31, "I;16", 4, 16, 16, "box"),
    (45, 33, "RGB", 1, 20, 18, "hamming"),
    (33, 45, "RGB", 1, 20, 18, "nearest-exact"),
]


@pytest.mark.parametrize("w,h,mode,orientation,resize,crop,interp", CASES)
def test_identical_pixels_and_inputs(w, h, mode, orientation, resize, crop, interp):
    definition = Training(resize=resize, crop=crop, interpolation=interp, mean=MEAN, std=STD).to_dict()
    training, serving = Training.from_dict(definition), Serving.from_dict(definition)
    seed = random.Random(f"{w}{h}{mode}").randrange(1 << 30)
    expected = training.to_uint8(with_orientation(noisy((w, h), mode, seed), orientation))
    got = serving.to_uint8(with_orientation(noisy((w, h), mode, seed), orientation))
    assert got.shape == (crop, crop, 3) and got.dtype == np.uint8
    assert np.array_equal(got, expected.permute(1, 2, 0).numpy())
    normalised = training.normalize(expected.unsqueeze(0)).numpy()
    assert normalised.dtype == np.float32
    assert np.array_equal(serving.normalize(got[None]), normalised)  # bit for bit


def test_every_interpolation_the_worker_knows_is_served():
    from torchvision.transforms import InterpolationMode

    assert set(RESAMPLE) == {m.value for m in InterpolationMode}


def test_a_batch_normalises_like_the_worker():
    prep = Training(resize=8, crop=8, interpolation="bilinear", mean=MEAN, std=STD)
    batch = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    got = Serving.from_dict(prep.to_dict()).normalize(batch.permute(0, 2, 3, 1).numpy())
    assert np.array_equal(got, prep.normalize(batch).numpy())


def test_the_orientation_tag_survives_the_round_trip():
    from PIL import ImageOps

    assert ImageOps.exif_transpose(with_orientation(noisy((23, 37), "RGB", 0), 6)).size == (37, 23)
