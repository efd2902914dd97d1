"""A job's data: labels from the manifest at once, images decoded only when needed, and cached across jobs.

Decoded images are cached per dataset version and preprocessing; a later job on the same data (another
learning rate, say) skips decoding, and a job whose backbone features are cached never decodes at all.
"""

import hashlib
import json
import time
from pathlib import Path

import torch

from worker.training.data import SPLITS, Preprocessing, Split, load_splits
from worker.training.tensor_cache import TensorCache, cache_key

IMAGES_VERSION = 1  # bump when decoding changes, so old cache entries are never read


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's classes and items (the split assignment is part of a dataset version)."""
    text = json.dumps({"classes": manifest["classes"], "items": manifest["items"]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class DatasetInputs:
    """One dataset as a job sees it."""

    def __init__(self, archive_path: Path, manifest: dict, prep: Preprocessing, *, threads: int,
                 dataset_sha256: str | None, image_cache: TensorCache | None, logger):
        self.archive_path, self.manifest, self.prep, self.threads = archive_path, manifest, prep, threads
        self.logger = logger
        self.digest = manifest_digest(manifest)
        self.labels = {}
        for name in SPLITS:
            labels = [item["label"] for item in manifest["items"] if item["split"] == name]
            if labels:
                self.labels[name] = torch.tensor(labels)
        missing = [s for s in ("train", "val") if s not in self.labels]
        if missing:
            raise ValueError(f"the dataset has no {' or '.join(missing)} images")
        self.dataset_sha256 = dataset_sha256
        self.cache = image_cache if dataset_sha256 else None  # without a dataset version, nothing is shared
        self._images: dict[str, Split] | None = None

    def sizes(self) -> dict[str, int]:
        """Items per split."""
        return {name: len(labels) for name, labels in self.labels.items()}

    def key(self, **parts: object) -> str | None:
        """A cross-job cache key for something derived from this dataset version, or None without one."""
        if not self.dataset_sha256:
            return None
        return cache_key(dataset=self.dataset_sha256, manifest=self.digest, **parts)

    def images(self) -> dict[str, Split]:
        """uint8 images N×3×S×S per split, decoded on first use (or read from the image cache)."""
        if self._images is None:
            start = time.perf_counter()
            key = self.key(kind="images", version=IMAGES_VERSION, prep=self.prep.to_dict())
            stored = self.cache.get(key) if self.cache is not None else None
            if stored is not None and all(stored.get(f"{s}.images", torch.empty(0)).shape[0] == len(labels)
                                          for s, labels in self.labels.items()):
                self._images = {s: Split(stored[f"{s}.images"], labels) for s, labels in self.labels.items()}
                source = "image cache"
            else:
                self._images = load_splits(self.archive_path, self.manifest, self.prep, threads=self.threads)
                if self.cache is not None:
                    self.cache.put(key, {f"{s}.images": split.images for s, split in self._images.items()})
                source = "archive"
            self.logger.log_event("dataset decoded", source=source, seconds=round(time.perf_counter() - start, 3),
                                  **self.sizes())
        return self._images

    def release(self) -> None:
        """Drop the decoded images; a long-lived worker gets that memory back now."""
        self._images = None
