"""A trained model on disk: model.safetensors + config.json, rebuilt with torchvision or efficientnet-lite.

To rebuild without this package: build the native architecture (`torchvision.models.get_model(arch,
weights=None)` or `EfficientNet.from_name("efficientnet-lite0")`), set the submodule `head.module` to
`nn.Sequential(nn.Dropout(dropout), nn.Linear(head.in_features, num_classes))`, load model.safetensors
strictly, and feed it inputs prepared as `preprocessing` says.
"""

import json
import os
from pathlib import Path

import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from worker.training import architectures as A
from worker.training.data import Preprocessing

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def model_config(*, arch: str, classes: list[str], dropout: float, preprocessing: Preprocessing,
                 in_features: int, training: dict | None = None) -> dict:
    """The config.json that travels with model.safetensors; `training` records how it was trained (its
    device and precision: provenance only, nothing needs it to rebuild the model)."""
    config = {"format_version": FORMAT_VERSION, "arch": arch, "num_classes": len(classes), "classes": classes,
              "dropout": dropout, "preprocessing": preprocessing.to_dict(), "head_keys": A.head_keys(arch),
              "head": {"module": A.get_arch(arch).head_module, "in_features": in_features}}
    if training is not None:
        config["training"] = training
    return config


def _write_atomically(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)  # a reader never sees half a file


def save_artifact(model: nn.Module, config: dict, out_dir: Path) -> Path:
    """Write the full state dict and its config into out_dir; returns out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared or strided storage (channels_last is strided), so every tensor gets its own
    # contiguous copy, on the CPU wherever the model trained.
    state = {k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
             for k, v in model.state_dict().items()}
    # The classes ride in the header too, so a later job can tell whether the head still fits its dataset.
    metadata = {"format": "pt", "arch": config["arch"], "classes": json.dumps(config["classes"])}
    _write_atomically(out_dir / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata=metadata))
    config_text = json.dumps(config, indent=1, sort_keys=True)
    _write_atomically(out_dir / CONFIG_FILE, lambda p: p.write_text(config_text))
    return out_dir


def saved_classes(weights_path: Path) -> list[str] | None:
    """The classes stored in a safetensors header by save_artifact, or None for other files."""
    with safe_open(str(weights_path), framework="pt") as f:
        classes = (f.metadata() or {}).get("classes")
    return json.loads(classes) if classes else None


def load_model(source: str | Path | tuple[Path, Path]) -> tuple[nn.Module, dict]:
    """Rebuild a model in eval mode from a model directory or a (weights, config) pair of paths."""
    if isinstance(source, str | os.PathLike):
        weights_path, config_path = Path(source) / WEIGHTS_FILE, Path(source) / CONFIG_FILE
    else:
        weights_path, config_path = source
    config = json.loads(Path(config_path).read_text())
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported model format_version {config.get('format_version')!r}")
    model = A.replace_head(A.get_arch(config["arch"]).build(), config["arch"], config["num_classes"],
                           config["dropout"])
    model.load_state_dict(load_file(str(weights_path)), strict=True)
    return model.eval(), config


@torch.no_grad()
def predict(model: nn.Module, config: dict, images: list[Image.Image], *, top_k: int = 5,
            batch_size: int = 32) -> list[list[tuple[str, float]]]:
    """Top-k (label, probability) per image, most probable first, through the model's own preprocessing."""
    prep = Preprocessing.from_dict(config["preprocessing"])
    classes, k = config["classes"], min(top_k, len(config["classes"]))
    model.eval()
    results = []
    for i in range(0, len(images), batch_size):
        batch = torch.stack([prep.to_uint8(image) for image in images[i: i + batch_size]])
        probs, idx = model(prep.normalize(batch)).softmax(1).topk(k, dim=1)
        results += [[(classes[j], p) for j, p in zip(row_idx.tolist(), row_p.tolist(), strict=True)]
                    for row_idx, row_p in zip(idx, probs, strict=True)]
    return results
