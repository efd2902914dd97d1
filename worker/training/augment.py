"""Augmentation presets on decoded uint8 images (torchvision.transforms.v2), drawn per image."""

from collections.abc import Callable

import torch
from torch import Tensor
from torchvision.transforms import v2

PRESETS = ("none", "light", "strong")


def build_augment(preset: str, size: int) -> Callable[[Tensor], Tensor] | None:
    """A function from a uint8 batch N×3×S×S to an augmented one of the same shape; None for `none`."""
    if preset == "none":
        return None
    if preset == "light":
        transform = v2.Compose([v2.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True),
                                v2.RandomHorizontalFlip()])
    elif preset == "strong":
        transform = v2.Compose([v2.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True),
                                v2.RandomHorizontalFlip(), v2.TrivialAugmentWide(), v2.RandomErasing(p=0.25)])
    else:
        raise ValueError(f"unsupported augment {preset!r}; supported: {', '.join(PRESETS)}")

    def apply(batch: Tensor) -> Tensor:
        # Per image: a v2 transform given the whole batch would draw one crop for all of it. The draws come
        # from torch's global generator, which checkpoints save and restore.
        return torch.stack([transform(image) for image in batch])

    return apply
