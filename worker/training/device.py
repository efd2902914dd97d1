"""Where the training engine runs: `TAAS_DEVICE` (auto, cpu or cuda), and moving tensors there and back.

`auto` (the default) is the first CUDA GPU when torch sees one, the CPU otherwise. Everything a job keeps
between jobs or writes to disk (decoded images, cached features, checkpoints, the saved model) lives on the
CPU; only the model, its optimizer state and the batches in flight live on the device.
"""

import gc
import os

import torch
from torch import Tensor

DEVICE_ENV = "TAAS_DEVICE"
CHOICES = ("auto", "cpu", "cuda")


class DeviceError(RuntimeError):
    """TAAS_DEVICE names no device this worker can use (a worker misconfiguration, not a bad spec)."""


def resolve_device(value: str | None = None) -> torch.device:
    """The device `value` (default: $TAAS_DEVICE, else auto) names; DeviceError for anything else."""
    raw = os.environ.get(DEVICE_ENV, "") if value is None else value
    choice = raw.strip().lower() or "auto"
    if choice not in CHOICES:
        raise DeviceError(f"{DEVICE_ENV}={raw!r} is not a device: use one of {', '.join(CHOICES)}")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    elif choice == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{DEVICE_ENV}=cuda but torch {torch.__version__} sees no CUDA device")
    if choice == "cpu":
        return torch.device("cpu")
    # cuBLAS is only deterministic with a fixed workspace; it reads this when its first handle is made.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # With an index, so that `tensor.device == device` holds for the tensors placed there.
    return torch.device("cuda", torch.cuda.current_device())


def describe(device: torch.device) -> dict:
    """What a job records about its device: {"device": "cuda:0", "device_name": "NVIDIA H100 ..."}."""
    info = {"device": str(device)}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    return info


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """x on `device`; a CPU tensor bound for a GPU goes through pinned memory and is copied asynchronously.

    The pinned buffer comes from torch's caching host allocator, which keeps it until the copy has finished.
    """
    if x.device == device:
        return x
    if device.type == "cuda" and x.device.type == "cpu":
        return (x if x.is_pinned() else x.pin_memory()).to(device, non_blocking=True)
    return x.to(device)


def to_cpu(obj):
    """A copy of a nest of dicts, lists and tuples with every tensor detached and on the CPU (for saving)."""
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def release_memory() -> None:
    """Give a finished job's accelerator memory back to the driver (a long-lived worker runs many jobs)."""
    if torch.cuda.is_initialized():  # never set up CUDA (or pay for a collection) just to release nothing
        gc.collect()  # reference cycles (optimizer and scheduler, closures) may still hold device tensors
        torch.cuda.empty_cache()
