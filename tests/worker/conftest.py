"""Shared fixtures for worker tests: tiny archives with manifests, resolved specs, a recording logger.

TAAS_TEST_DEVICE (cpu by default; cuda or auto on a GPU machine) is the TAAS_DEVICE the engine gets in every
test, so the same tests check the engine on a GPU: `TAAS_TEST_DEVICE=cuda pytest tests/worker`.
"""

import copy
import hashlib
import io
import math
import os
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ["red", "green", "blue"]
COLOURS = [(220, 40, 40), (40, 200, 40), (40, 60, 220), (220, 220, 40), (220, 40, 220), (40, 220, 220),
           (250, 250, 250)]

BASE_SPEC = {
    "dataset_id": "ds_test",
    "base_model": {"arch": "resnet18", "weights": "none"},
    "freeze": {"policy": "none", "until": None, "batch_norm": "frozen"},
    "head": {"dropout": 0.0},
    "hyperparameters": {"epochs": 3, "batch_size": 8, "learning_rate": 0.001, "optimizer": "adam",
                        "momentum": 0.9, "weight_decay": 0.0, "image_size": 32, "seed": 0},
    "regularization": {"kind": "none", "alpha": 0.0},
}


TEST_DEVICE = os.environ.get("TAAS_TEST_DEVICE", "cpu")


def engine_device():
    """The torch.device the engine runs on in these tests."""
    from worker.training.device import resolve_device

    return resolve_device(TEST_DEVICE)


def on_gpu() -> bool:
    return engine_device().type == "cuda"


class NotBitIdentical(UserWarning):
    """Two runs that should agree bit for bit agreed only within the GPU tolerance."""


GPU_REL, GPU_ABS = 1e-3, 1e-4  # run-to-run tolerance on a GPU (a CPU must agree exactly)


def _close(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=GPU_REL, abs_tol=GPU_ABS)
    return a == b


def assert_same_numbers(a, b) -> None:
    """Equal (nested dicts and lists of numbers); on a GPU within a float tolerance, with a warning when not
    bit for bit, so that the log tells how reproducible the GPU was."""
    if a == b:
        return
    if not on_gpu():
        assert a == b
    assert _close(a, b), (a, b)
    warnings.warn(NotBitIdentical(f"runs agree only within rel {GPU_REL}, abs {GPU_ABS} on {engine_device()}"),
                  stacklevel=2)


def assert_same_tensors(a: dict, b: dict) -> None:
    """Two state dicts hold equal tensors (on a GPU within the tolerance, as assert_same_numbers)."""
    import torch

    assert a.keys() == b.keys()
    if all(torch.equal(a[k], b[k]) for k in a):
        return
    assert on_gpu(), [k for k in a if not torch.equal(a[k], b[k])]
    far = [k for k in a if not torch.allclose(a[k].double(), b[k].double(), rtol=GPU_REL, atol=GPU_ABS)]
    assert not far, far
    warnings.warn(NotBitIdentical(f"weights agree only within rel {GPU_REL}, abs {GPU_ABS} on {engine_device()}"),
                  stacklevel=2)


class RecordingLogger:
    """A MetricLogger that keeps everything it is told."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []
        self.events: list[tuple[str, dict]] = []

    def log_epoch(self, metrics: dict) -> None:
        self.epochs.append(metrics)

    def log_event(self, message: str, **data) -> None:
        self.events.append((message, data))


def write_archive(path: Path, members: dict[str, bytes]) -> Path:
    """A zip or tar (by suffix) holding the given members."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
    else:
        with tarfile.open(path, "w") as tf:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="session", autouse=True)
def engine_on_test_device():
    """TAAS_DEVICE for the whole session (module-scoped fixtures train too, so a session fixture sets it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAAS_DEVICE", TEST_DEVICE)
        engine_device()  # a bad TAAS_TEST_DEVICE fails here, before any test
        yield


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Train on one thread: on a shared 2-core machine OpenMP's spinning threads make 2 up to 10× slower."""
    import torch

    before = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")  # what the recipe's thread count reads
        torch.set_num_threads(1)
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def make_dataset(tmp_path_factory):
    """Build (archive_path, manifest) from [(PIL image, label, split)] and class names."""

    def make(samples: list[tuple[Image.Image, int, str]], classes: list[str], name: str = "data.zip"):
        directory = tmp_path_factory.mktemp("dataset")
        members, items = {}, []
        for i, (image, label, split) in enumerate(samples):
            member = f"{split}/{classes[label]}/{i:04d}.png"
            members[member] = png_bytes(image)
            items.append({"path": member, "label": label, "split": split})
        return write_archive(directory / name, members), {"classes": classes, "items": items}

    return make


@pytest.fixture(scope="session")
def make_spec():
    """A resolved spec: the defaults above with nested overrides merged in."""

    def make(**sections) -> dict:
        spec = copy.deepcopy(BASE_SPEC)
        for section, values in sections.items():
            spec[section].update(values)
        return spec

    return make


def square(label: int, rng: np.random.Generator) -> Image.Image:
    """A coloured square at a random place on grey noise, 48×40 so resize and crop both do something."""
    pixels = rng.integers(90, 160, size=(40, 48, 3), dtype=np.uint8)
    size = int(rng.integers(16, 24))
    top, left = int(rng.integers(0, 40 - size)), int(rng.integers(0, 48 - size))
    pixels[top: top + size, left: left + size] = COLOURS[label]
    return Image.fromarray(pixels)


@pytest.fixture(scope="session")
def squares(make_dataset):
    """(archive, manifest, test images): 3 colours, 12/6/6 per class in train/val/test."""
    rng = np.random.default_rng(0)
    samples = [(square(label, rng), label, split)
               for split, per_class in (("train", 12), ("val", 6), ("test", 6))
               for label in range(3) for _ in range(per_class)]
    archive, manifest = make_dataset(samples, CLASSES)
    return archive, manifest, [image for image, _, split in samples if split == "test"]


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory, squares):
    """Stand-in "pretrained" base weights for an arch: (path, sha256) of a seeded native model's safetensors,
    its batch-norm statistics measured on the squares' training images as pretraining would have left them."""
    import torch
    from safetensors.torch import save_file

    from worker.training import architectures as A
    from worker.training.data import Preprocessing, load_splits

    made: dict[str, tuple[Path, str]] = {}

    def make(arch: str) -> tuple[Path, str]:
        if arch not in made:
            torch.manual_seed(123)
            model = A.get_arch(arch).build()
            prep = Preprocessing.for_image_size(A.default_preprocessing(arch), 32)
            x = prep.normalize(load_splits(squares[0], squares[1], prep)["train"].images)
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.momentum = None  # a cumulative average over the calibration batch
            with torch.no_grad():
                model.train()(x)
            # Channels that are constant on these images would divide by ~0 in eval mode: floor their variance.
            state = {k: (v.clamp(min=1e-2) if k.endswith("running_var") else v).contiguous()
                     for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
            path = tmp_path_factory.mktemp("weights") / f"{arch}.safetensors"
            save_file(state, str(path))
            made[arch] = path, hashlib.sha256(path.read_bytes()).hexdigest()
        return made[arch]

    return make
