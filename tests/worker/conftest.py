"""Shared fixtures for worker tests: tiny archives with manifests, resolved specs, a recording logger."""

import copy
import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

BASE_SPEC = {
    "dataset_id": "ds_test",
    "base_model": {"arch": "resnet18", "weights": "none"},
    "freeze": {"policy": "none", "until": None, "batch_norm": "frozen"},
    "head": {"dropout": 0.0},
    "hyperparameters": {"epochs": 3, "batch_size": 8, "learning_rate": 0.001, "optimizer": "adam",
                        "momentum": 0.9, "weight_decay": 0.0, "image_size": 32, "seed": 0, "num_workers": 0},
    "regularization": {"kind": "none", "alpha": 0.0},
}


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
