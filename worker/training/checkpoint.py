"""Per-epoch checkpoints: one plain dict of tensors and numbers, written atomically, read with weights_only.

A checkpoint holds everything the next epoch depends on (the weights that can change, optimizer, scheduler,
best-so-far weights and score, early-stopping counters and every random state), so a resumed run continues
bit for bit where the original stopped.
"""

import os
from pathlib import Path

import torch

from worker.training.device import to_cpu

FORMAT_VERSION = 1


def checkpoint_path(directory: Path, epoch: int) -> Path:
    """Where epoch `epoch`'s checkpoint lives."""
    return Path(directory) / f"epoch-{epoch}.pt"


def save_checkpoint(path: Path, state: dict) -> Path:
    """torch.save `state` to path through a temporary file, so a reader never sees half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    # CPU tensors only: a checkpoint written on a GPU loads anywhere (and load_checkpoint maps to the CPU).
    torch.save(to_cpu({"format_version": FORMAT_VERSION, **state}), tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by save_checkpoint; weights_only, so unpickling never runs code."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a checkpoint of format version {FORMAT_VERSION}")
    return state


def rng_state(generator: torch.Generator, device: torch.device | None = None) -> dict:
    """The global CPU random state, the shuffling generator's, and a GPU's (dropout draws there) on CUDA."""
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict, generator: torch.Generator, device: torch.device | None = None) -> None:
    """Put back what rng_state returned (a GPU's state only on a GPU: elsewhere nothing draws from it)."""
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
