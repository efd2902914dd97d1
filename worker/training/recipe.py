"""The fine-tuning recipe: setup → train (checkpointing every epoch) → final metrics → save → cleanup.

One validated spec drives it (core.spec.JobSpec, the same rules the API applied), and the schedule of
frozen groups and learning rates is core.plan's, so a job runs exactly the plan its dry run showed.
Metrics leave only through a MetricLogger, so the recipe never knows where numbers go.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from core.plan import features_cacheable, frozen_count, group_learning_rates
from core.spec import JobSpec, check_batch_pixels, check_combinations
from worker.training import architectures as A
from worker.training.artifact import model_config, save_artifact, saved_classes
from worker.training.augment import build_augment
from worker.training.base_weights import load_base_weights
from worker.training.checkpoint import checkpoint_path, load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from worker.training.data import Preprocessing
from worker.training.device import describe, release_memory, resolve_device
from worker.training.errors import TrainingCancelled
from worker.training.freeze import set_frozen_prefix, set_modes
from worker.training.inputs import DatasetInputs
from worker.training.loop import (
    batch_slices,
    classification_metrics,
    epoch_scores,
    evaluate,
    top5_accuracy,
    train_one_epoch,
)
from worker.training.network import Network, autocast_dtype, deterministic
from worker.training.objective import Objective
from worker.training.optim import build_optimizer, build_scheduler
from worker.training.prefix import PrefixInputs
from worker.training.tensor_cache import TensorCache, cache_key

__all__ = ["MetricLogger", "Recipe", "TrainResult", "TrainingCancelled", "run_training"]

DEFAULT_CACHE_MAX_BYTES = 4 * 2**30  # per cache directory (features, images)


class MetricLogger(Protocol):
    # epoch (1-based), train_loss, train_accuracy, val_loss, val_accuracy, learning_rate, images_per_second,
    # seconds, and val_top5_accuracy with more than 5 classes
    def log_epoch(self, metrics: dict) -> None: ...

    def log_event(self, message: str, **data) -> None: ...


@dataclass
class TrainResult:
    model_dir: Path  # model.safetensors + config.json
    best_epoch: int
    # val_accuracy, test_accuracy (with a test split), evaluated_on, per_class, confusion_matrix,
    # top5_accuracy (more than 5 classes)
    metrics: dict


def _threads() -> int:
    # The CPUs this process may use (a container's quota can be below os.cpu_count()).
    return int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))


class Recipe:
    """One fine-tuning run; every spec check happens in __init__, before any work."""

    def __init__(self, spec: dict, *, logger: MetricLogger, should_stop: Callable[[], bool] = lambda: False,
                 max_batch_pixels: int | None = None):
        self.spec = JobSpec.model_validate(spec)
        check_combinations(self.spec)
        if max_batch_pixels is not None:  # the API's TAAS_MAX_BATCH_PIXELS, sent with the claim
            check_batch_pixels(self.spec, max_batch_pixels)
        self.arch, self.weights = self.spec.base_model.arch, self.spec.base_model.weights
        A.get_arch(self.arch)
        self.hp, self.freeze = self.spec.hyperparameters, self.spec.freeze
        self.logger, self.should_stop = logger, should_stop
        self.cuts = [frozen_count(self.spec, e) for e in range(1, self.hp.epochs + 1)]  # frozen groups per epoch
        self.device = resolve_device()  # TAAS_DEVICE: auto (a GPU when there is one), cpu or cuda

    # ---- setup -------------------------------------------------------------------------------------------
    def setup(self, *, archive_path: Path, manifest: dict, weights_path: Path | None,
              dataset_sha256: str | None = None, weights_sha256: str | None = None,
              image_cache: TensorCache | None = None, feature_cache: TensorCache | None = None) -> None:
        """Index the data, build the model with its weights, and make optimizer, schedule and objective."""
        if (weights_path is None) != (self.weights == "none"):
            raise ValueError(f"base_model.weights is {self.weights!r} but weights_path is {weights_path}")
        torch.set_num_threads(_threads())
        torch.manual_seed(self.hp.seed)  # head init, a random backbone, dropout, augmentation
        self.classes = list(manifest["classes"])
        self.prep = Preprocessing.for_image_size(A.default_preprocessing(self.arch), self.hp.image_size)
        self.data = DatasetInputs(archive_path, manifest, self.prep, threads=_threads(),
                                  dataset_sha256=dataset_sha256, image_cache=image_cache, logger=self.logger)
        # Built and initialised on the CPU (the same initial weights on every device), then moved.
        model = A.build_model(self.arch, len(self.classes), dropout=self.spec.head.dropout,
                              state_dict=self._base_state(weights_path, weights_sha256))
        # channels_last: oneDNN's convolutions (and cuDNN's) are fastest in NHWC.
        model = model.to(self.device, memory_format=torch.channels_last)
        dtype = autocast_dtype(self.hp.precision.value, self.device)
        self.training_info = {**describe(self.device), "precision": str(dtype or torch.float32).removeprefix("torch.")}
        self.net = Network(model, self.arch, self.prep, dtype=dtype, channels_last=True, device=self.device)
        self.model = model
        reg = self.spec.regularization
        self.objective = Objective(model, self.arch, kind=reg.kind.value, alpha=reg.alpha,
                                   label_smoothing=self.hp.label_smoothing)
        self.optimizer = build_optimizer(model, self.arch, self.spec, group_learning_rates(self.spec))
        self.scheduler = build_scheduler(self.optimizer, self.spec,
                                         len(batch_slices(self.data.sizes()["train"], self.hp.batch_size)))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=dtype == torch.float16)
        self.generator = torch.Generator().manual_seed(self.hp.seed)  # shuffling (on the CPU), apart from init
        self.augment = build_augment(self.hp.augment.value, self.hp.image_size)
        self.inputs = PrefixInputs(self.net, self.data, cuts=self.cuts, enabled=features_cacheable(self.spec),
                                   batch_size=self.hp.batch_size, logger=self.logger, should_stop=self.should_stop,
                                   feature_cache=feature_cache,
                                   weights_id=self._weights_id(weights_path, weights_sha256))
        self.mutable_keys = self._mutable_keys()
        self.logger.log_event("model built", frozen_groups=A.group_names(self.arch)[: self.cuts[0]],
                              trainable_params=sum(p.numel() for k, p in model.named_parameters()
                                                   if self._group_index(k) >= self.cuts[0]),
                              **self.training_info)

    def _base_state(self, weights_path: Path | None, sha256: str | None) -> dict[str, Tensor] | None:
        if weights_path is None:
            return None
        state = dict(load_base_weights(weights_path, sha256))  # a copy of the dict: the cached one stays whole
        # Only a model trained here on exactly these classes keeps its head; anything else gets a fresh one.
        if saved_classes(weights_path) != self.classes:
            for key in A.head_keys(self.arch) + A.native_head_keys(self.arch):
                state.pop(key, None)
        return state

    def _weights_id(self, weights_path: Path | None, sha256: str | None) -> str | None:
        # What the backbone's weights are, for cross-job caches: the file's sha256, or for a random init the seed
        # (torch draws the same initial weights from the same seed on the same version); None: unknown.
        if weights_path is None:
            return f"random-init:seed={self.hp.seed}:torch={torch.__version__}"
        return sha256

    def _group_index(self, key: str) -> int:
        return A.group_names(self.arch).index(A.group_of(self.arch, key))

    def _mutable_keys(self) -> list[str]:
        # What training can change: the groups that train in some epoch, and with batch_norm "train" every BN
        # statistic too. Checkpoints and the best-so-far copy hold only these (the head alone for head_only).
        state = self.model.state_dict()
        if self.freeze.batch_norm == "train":
            return list(state)
        return [k for k in state if self._group_index(k) >= min(self.cuts)]

    def _state(self) -> dict[str, Tensor]:
        state = self.model.state_dict()
        return {k: state[k].detach().clone() for k in self.mutable_keys}

    def _load_state(self, state: dict[str, Tensor]) -> None:
        if sorted(state) != sorted(self.mutable_keys):
            raise ValueError("the checkpoint's weights do not fit this job's model")
        self.model.load_state_dict(state, strict=False)

    # ---- train -------------------------------------------------------------------------------------------
    def train(self, *, checkpoint_dir: Path | None = None, resume_from: Path | None = None,
              on_checkpoint: Callable[[int, Path], None] | None = None) -> None:
        """Run the epochs, checkpoint then log each, keep the best weights, stop early if the spec says so."""
        es = self.hp.early_stopping
        self.monitor = es.monitor.value if es else "val_accuracy"
        self.min_delta = es.min_delta if es else 0.0
        self.best_epoch, self.best_score, self.best_state, self.wait, self.stopped = 0, None, None, 0, False
        self.last_cut, first = self.cuts[0], 1
        if resume_from is not None:
            first = self._resume(resume_from) + 1
        for epoch in range(first, self.hp.epochs + 1):
            if self.stopped:
                break
            cut = self.cuts[epoch - 1]
            if cut != self.last_cut:
                self.logger.log_event("block groups unfrozen", epoch=epoch,
                                      groups=A.group_names(self.arch)[cut: self.last_cut])
            self.last_cut = cut
            set_frozen_prefix(self.model, self.arch, cut)
            splits, cached = self.inputs.splits(cut)
            set_modes(self.model, self.arch, cut, training=True, batch_norm=self.freeze.batch_norm.value)
            stats = train_one_epoch(self.net, splits["train"], cut=cut, cached=cached, objective=self.objective,
                                    optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
                                    batch_size=self.hp.batch_size, generator=self.generator,
                                    augment=None if cached else self.augment, grad_clip=self.hp.grad_clip,
                                    should_stop=self.should_stop)
            logits = evaluate(self.net, splits["val"], cut=cut, cached=cached, batch_size=self.hp.batch_size)
            scores = epoch_scores(logits, splits["val"].labels)
            self._track(epoch, scores[self.monitor], patience=es.patience if es else None)
            metrics = {"epoch": epoch, "train_loss": stats["loss"], "train_accuracy": stats["accuracy"], **scores,
                       "learning_rate": self.optimizer.param_groups[-1]["lr"],  # the head's
                       "images_per_second": stats["images_per_second"], "seconds": stats["seconds"]}
            if checkpoint_dir is not None:
                # Stored before the epoch is logged: metrics the API holds always have a checkpoint behind them.
                path = save_checkpoint(checkpoint_path(checkpoint_dir, epoch), self._checkpoint(epoch))
                if on_checkpoint is not None:
                    on_checkpoint(epoch, path)
            self.logger.log_epoch(metrics)
            if checkpoint_dir is not None:
                for old in range(1, epoch):  # logged, hence handed on: only the newest is kept on disk
                    checkpoint_path(checkpoint_dir, old).unlink(missing_ok=True)
            if self.stopped:
                self.logger.log_event("early stopping", epoch=epoch, best_epoch=self.best_epoch,
                                      monitor=self.monitor, best=self.best_score)

    def _track(self, epoch: int, score: float, *, patience: int | None) -> None:
        better = (self.best_score is None
                  or (score < self.best_score - self.min_delta if self.monitor == "val_loss"
                      else score > self.best_score + self.min_delta))  # strictly: ties keep the earlier epoch
        if better:
            self.best_epoch, self.best_score, self.best_state, self.wait = epoch, score, self._state(), 0
        else:
            self.wait += 1
            self.stopped = patience is not None and self.wait >= patience

    def _checkpoint(self, epoch: int) -> dict:
        return {"epoch": epoch, "spec": cache_key(spec=self.spec.model_dump(mode="json")),
                "model": self._state(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict(),
                "best": {"epoch": self.best_epoch, "score": self.best_score, "state": self.best_state},
                "early_stopping": {"wait": self.wait, "stopped": self.stopped}, "cut": self.last_cut,
                "rng": rng_state(self.generator, self.device)}  # save_checkpoint moves every tensor to the CPU

    def _resume(self, path: Path) -> int:
        state = load_checkpoint(path)
        if state["spec"] != cache_key(spec=self.spec.model_dump(mode="json")):
            raise ValueError("the checkpoint was written for another spec")
        self._load_state(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        best = state["best"]
        self.best_epoch, self.best_score, self.best_state = best["epoch"], best["score"], best["state"]
        stopping = state["early_stopping"]
        self.wait, self.stopped, self.last_cut = stopping["wait"], stopping["stopped"], state["cut"]
        restore_rng_state(state["rng"], self.generator, self.device)
        self.logger.log_event("resumed from checkpoint", epoch=state["epoch"])
        return int(state["epoch"])

    # ---- results -----------------------------------------------------------------------------------------
    def final_metrics(self) -> dict:
        """Load the best epoch's weights and score them on test (or on val, labelled so, without a test split)."""
        if self.best_state is None:
            raise ValueError("no epoch was trained")
        self._load_state(self.best_state)
        # Every group before the last epoch's cut was frozen throughout, so that prefix still fits the weights.
        splits, cached = self.inputs.splits(self.last_cut)
        split_name = "test" if "test" in splits else "val"
        metrics: dict = {"evaluated_on": split_name}
        for name in ("val", "test"):
            if name not in splits:
                continue
            logits = evaluate(self.net, splits[name], cut=self.last_cut, cached=cached, batch_size=self.hp.batch_size)
            labels = splits[name].labels
            metrics[f"{name}_accuracy"] = (logits.argmax(1) == labels).float().mean().item()
            if name == split_name:
                report = classification_metrics(logits.argmax(1), labels, self.classes)
                metrics.update(per_class=report["per_class"], confusion_matrix=report["confusion_matrix"])
                if len(self.classes) > 5:
                    metrics["top5_accuracy"] = top5_accuracy(logits, labels)
        return metrics

    def save(self, out_dir: Path) -> Path:
        """Write model.safetensors and config.json (the current, i.e. best, weights)."""
        config = model_config(arch=self.arch, classes=self.classes, dropout=self.spec.head.dropout,
                              preprocessing=self.prep, in_features=A.head_in_features(self.model, self.arch),
                              training=self.training_info)
        return save_artifact(self.model, config, Path(out_dir))

    def cleanup(self) -> None:
        """Drop the data, the model and every copy of weights so a long-lived worker gets its memory back
        (a GPU's too: its cached blocks go back to the driver)."""
        for name in ("inputs", "data", "net", "model", "objective", "optimizer", "scheduler", "scaler",
                     "best_state"):
            self.__dict__.pop(name, None)
        release_memory()


def run_training(*, spec: dict, archive_path: Path, manifest: dict, weights_path: Path | None, out_dir: Path,
                 logger: MetricLogger, should_stop: Callable[[], bool] = lambda: False,
                 checkpoint_dir: Path | None = None, resume_from: Path | None = None,
                 on_checkpoint: Callable[[int, Path], None] | None = None,
                 dataset_sha256: str | None = None, weights_sha256: str | None = None,
                 feature_cache_dir: Path | None = None, image_cache_dir: Path | None = None,
                 cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES, max_batch_pixels: int | None = None) -> TrainResult:
    """Fine-tune as the spec says and save the best epoch's model into out_dir.

    With checkpoint_dir, each epoch's checkpoint is written there (then on_checkpoint(epoch, path) is called)
    before the epoch is logged; resume_from continues after the epoch a checkpoint holds. With dataset_sha256,
    decoded images are cached across jobs in image_cache_dir, and with weights_sha256 (the sha256 of the file at
    weights_path) or a random init, frozen-backbone features in feature_cache_dir; each capped at cache_max_bytes.
    """
    recipe = Recipe(spec, logger=logger, should_stop=should_stop, max_batch_pixels=max_batch_pixels)
    caches = {name: TensorCache(Path(d), cache_max_bytes) if d is not None else None
              for name, d in (("image_cache", image_cache_dir), ("feature_cache", feature_cache_dir))}
    try:
        with deterministic(recipe.hp.deterministic):
            recipe.setup(archive_path=archive_path, manifest=manifest, weights_path=weights_path,
                         dataset_sha256=dataset_sha256, weights_sha256=weights_sha256, **caches)
            recipe.train(checkpoint_dir=checkpoint_dir, resume_from=resume_from, on_checkpoint=on_checkpoint)
            metrics = recipe.final_metrics()
            model_dir = recipe.save(out_dir)
        return TrainResult(model_dir=model_dir, best_epoch=recipe.best_epoch, metrics=metrics)
    finally:
        recipe.cleanup()
