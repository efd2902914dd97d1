"""The frozen prefix's output computed once per phase instead of once per epoch.

With batch_norm "frozen" and no augmentation, the first `cut` groups map each image to the same output every
epoch, so it is computed once and only the trainable groups run per epoch. For a wholly frozen backbone those
outputs are the backbone features, cached on disk across jobs (a sweep over learning rates pays once).
"""

from collections.abc import Callable

import torch

from worker.training import architectures as A
from worker.training.data import Split
from worker.training.inputs import DatasetInputs
from worker.training.network import Network
from worker.training.tensor_cache import TensorCache

MAX_PREFIX_CACHE_BYTES = 2 * 2**30  # a job's in-memory copy of a frozen prefix's outputs (on its device)
FEATURES_VERSION = 1  # bump when feature extraction changes, so old cache entries are never read


class PrefixInputs:
    """What an epoch at a given cut reads: decoded images, or the prefix's outputs for that cut."""

    def __init__(self, net: Network, data: DatasetInputs, *, cuts: list[int], enabled: bool, batch_size: int,
                 logger, should_stop: Callable[[], bool], feature_cache: TensorCache | None,
                 weights_id: str | None):
        self.net, self.data, self.cuts, self.enabled, self.batch_size = net, data, cuts, enabled, batch_size
        self.logger, self.should_stop = logger, should_stop
        self.feature_cache = feature_cache if weights_id else None  # unknown weights: nothing shared
        self.weights_id = weights_id
        self._current: tuple[int, dict[str, Split]] | None = None

    def splits(self, cut: int) -> tuple[dict[str, Split], bool]:
        """The splits for an epoch at `cut`, and whether they are the prefix's outputs (not images)."""
        if self._current is not None and self._current[0] == cut:
            return self._current[1], True
        self._current = None  # a new cut: the old outputs are of no use any more
        if self.enabled and cut > 0:
            outputs = self._outputs(cut)
            if outputs is not None:
                self._current = (cut, outputs)
                if cut == min(self.cuts):  # cuts only shrink: no later epoch needs the images again
                    self.data.release()
                return outputs, True
        return self.data.images(), False

    def _key(self, cut: int) -> str | None:
        if cut != self.net.depth or self.feature_cache is None:
            return None
        # The device type too: a GPU's kernels round differently from a CPU's, and a job's numbers should not
        # depend on which worker filled the cache.
        return self.data.key(kind="features", version=FEATURES_VERSION, weights=self.weights_id,
                             arch=self.net.arch, prep=self.net.prep.to_dict(), dtype=str(self.net.dtype),
                             device=self.net.device.type)

    def _outputs(self, cut: int) -> dict[str, Split] | None:
        key = self._key(cut)
        stored = self.feature_cache.get(key) if key else None
        if stored is not None and all(f"{s}.features" in stored for s in self.data.labels):
            self.logger.log_event("backbone features loaded from cache", dims=list(stored["train.features"].shape[1:]))
            # Moved to the device once, where features computed here would have stayed.
            return {s: Split(stored[f"{s}.features"].to(self.net.device), labels)
                    for s, labels in self.data.labels.items()}
        images = self.data.images()
        total = sum(len(s) for s in images.values())
        self.net.model.eval()  # the prefix is frozen and (batch_norm frozen) in eval mode whenever it runs
        outputs: dict[str, Split] = {}
        for name, split in images.items():
            chunks = []
            for chunk in self.net.batched_prefix(split.images, cut, self.batch_size, self.should_stop):
                if not chunks and chunk[0].numel() * chunk.element_size() * total > MAX_PREFIX_CACHE_BYTES:
                    self.logger.log_event("frozen prefix too large to cache; it runs every epoch", cut=cut)
                    return None
                chunks.append(chunk)
            outputs[name] = Split(torch.cat(chunks), split.labels)  # on the device: no copy per epoch
        if key:  # the cache itself keeps CPU tensors
            self.feature_cache.put(key, {f"{s}.features": split.images for s, split in outputs.items()})
        message = "backbone features cached" if cut == self.net.depth else "frozen prefix cached"
        self.logger.log_event(message, frozen_groups=A.group_names(self.net.arch)[:cut],
                              dims=list(outputs["train"].images.shape[1:]))
        return outputs
