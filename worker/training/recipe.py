"""The fine-tuning recipe: setup → train → save → cleanup, driven by one resolved job spec.

Metrics leave only through a MetricLogger, so the recipe never knows where numbers go.
"""

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from worker.training import architectures as A
from worker.training.artifact import model_config, save_artifact, saved_classes
from worker.training.data import Preprocessing, Split, load_splits
from worker.training.freeze import apply_freeze, frozen_groups
from worker.training.loop import TrainingCancelled, classification_metrics, evaluate, train_one_epoch

__all__ = ["MetricLogger", "Recipe", "TrainResult", "TrainingCancelled", "run_training"]

OPTIMIZERS = ("adam", "sgd")


class MetricLogger(Protocol):
    # epoch (1-based), train_loss, train_accuracy, val_loss, val_accuracy, learning_rate,
    # images_per_second, seconds
    def log_epoch(self, metrics: dict) -> None: ...

    def log_event(self, message: str, **data) -> None: ...


@dataclass
class TrainResult:
    model_dir: Path  # model.safetensors + config.json
    best_epoch: int
    # val_accuracy, test_accuracy (with a test split), evaluated_on, per_class, confusion_matrix
    metrics: dict


def _threads() -> int:
    # The CPUs this process may use (a container's quota can be below os.cpu_count()).
    return int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))


class Recipe:
    """One fine-tuning run; every spec check happens in __init__, before any work."""

    def __init__(self, spec: dict, *, logger: MetricLogger, should_stop: Callable[[], bool] = lambda: False):
        self.arch = spec["base_model"]["arch"]
        self.weights = spec["base_model"]["weights"]
        self.freeze = spec["freeze"]
        self.dropout = float(spec["head"]["dropout"])
        self.hp = spec["hyperparameters"]
        self.logger, self.should_stop = logger, should_stop
        self.frozen = frozen_groups(self.arch, self.freeze["policy"], self.freeze.get("until"))  # checks arch
        if self.hp["optimizer"] not in OPTIMIZERS:
            raise ValueError(f"unsupported optimizer {self.hp['optimizer']!r}; "
                             f"supported: {', '.join(OPTIMIZERS)}")
        if spec["regularization"]["kind"] != "none":
            raise ValueError(f"unsupported regularization {spec['regularization']['kind']!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"head.dropout must be in [0, 1), got {self.dropout}")
        for key in ("epochs", "batch_size", "image_size"):
            if int(self.hp[key]) < 1:
                raise ValueError(f"hyperparameters.{key} must be positive, got {self.hp[key]}")

    def setup(self, *, archive_path: Path, manifest: dict, weights_path: Path | None) -> None:
        """Decode the data, build the model with its weights, freeze, and make the optimizer."""
        if (weights_path is None) != (self.weights == "none"):
            raise ValueError(f"base_model.weights is {self.weights!r} but weights_path is {weights_path}")
        torch.set_num_threads(_threads())
        torch.manual_seed(self.hp["seed"])  # head init, a random backbone, dropout
        self.classes = list(manifest["classes"])
        self.prep = Preprocessing.for_image_size(A.default_preprocessing(self.arch), self.hp["image_size"])
        self.splits = load_splits(archive_path, manifest, self.prep, threads=_threads())
        missing = [s for s in ("train", "val") if s not in self.splits]
        if missing:
            raise ValueError(f"the dataset has no {' or '.join(missing)} images")
        self.logger.log_event("dataset decoded", **{s: len(v) for s, v in self.splits.items()})
        self.model = A.build_model(self.arch, len(self.classes), dropout=self.dropout,
                                   state_dict=self._base_state(weights_path))
        apply_freeze(self.model, self.arch, self.frozen, batch_norm=self.freeze.get("batch_norm", "frozen"))
        self.backbone_frozen = self.frozen == A.group_names(self.arch)[:-1]
        self._prepare_inputs(self.freeze.get("batch_norm", "frozen") == "frozen")
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.logger.log_event("model built", frozen_groups=self.frozen,
                              trainable_params=sum(p.numel() for p in params))
        lr, decay = self.hp["learning_rate"], self.hp["weight_decay"]
        if self.hp["optimizer"] == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=lr, momentum=self.hp["momentum"], weight_decay=decay)
        else:
            self.optimizer = torch.optim.Adam(params, lr=lr, weight_decay=decay)
        self.criterion = nn.CrossEntropyLoss()
        self.generator = torch.Generator().manual_seed(self.hp["seed"])  # shuffling, apart from init

    def _base_state(self, weights_path: Path | None) -> dict[str, Tensor] | None:
        if weights_path is None:
            return None
        state = load_file(str(weights_path))
        # Only a model trained here on exactly these classes keeps its head; anything else gets a fresh one.
        if saved_classes(weights_path) != self.classes:
            for key in A.head_keys(self.arch) + A.native_head_keys(self.arch):
                state.pop(key, None)
        return state

    def _prepare_inputs(self, backbone_in_eval: bool) -> None:
        arch = A.get_arch(self.arch)
        self.inputs, self.normalize, self.forward = self.splits, self.prep.normalize, self.model
        if not self.backbone_frozen:
            return
        if not backbone_in_eval:
            self.forward = self._frozen_backbone_forward
            return
        # A frozen backbone in eval mode maps each image to the same features every epoch: compute them
        # once, and every epoch only runs the head.
        self.model.eval()
        with torch.no_grad():
            self.inputs = {name: Split(self._batched(lambda x: arch.features(self.model, x), split), split.labels)
                           for name, split in self.splits.items()}
        self.normalize, self.forward = (lambda f: f), (lambda f: arch.classify(self.model, f))
        self.splits = {}  # the decoded images are no longer needed; a worker gets that memory back now
        self.logger.log_event("backbone features cached", dims=list(self.inputs["train"].images.shape[1:]))

    def _batched(self, fn: Callable[[Tensor], Tensor], split: Split) -> Tensor:
        out, size = [], self.hp["batch_size"]
        for i in range(0, len(split), size):
            if self.should_stop():
                raise TrainingCancelled("training was cancelled")
            out.append(fn(self.prep.normalize(split.images[i: i + size])))
        return torch.cat(out)

    def _frozen_backbone_forward(self, x: Tensor) -> Tensor:
        arch = A.get_arch(self.arch)
        with torch.no_grad():  # features without an autograd graph: only the head learns
            features = arch.features(self.model, x)
        return arch.classify(self.model, features)

    def train(self) -> None:
        """Run every epoch, log it, and keep the weights of the best validation accuracy."""
        batch_size, self.best_epoch, best_accuracy = self.hp["batch_size"], 0, -1.0
        for epoch in range(1, self.hp["epochs"] + 1):
            stats = train_one_epoch(self.model, self.forward, self.inputs["train"], optimizer=self.optimizer,
                                    criterion=self.criterion, batch_size=batch_size, normalize=self.normalize,
                                    generator=self.generator, should_stop=self.should_stop)
            val_loss, val_accuracy, _ = evaluate(self.model, self.forward, self.inputs["val"],
                                                 criterion=self.criterion, batch_size=batch_size,
                                                 normalize=self.normalize)
            self.logger.log_epoch({
                "epoch": epoch, "train_loss": stats["loss"], "train_accuracy": stats["accuracy"],
                "val_loss": val_loss, "val_accuracy": val_accuracy,
                "learning_rate": self.optimizer.param_groups[0]["lr"],
                "images_per_second": stats["images_per_second"], "seconds": stats["seconds"]})
            if val_accuracy > best_accuracy:  # strictly better: ties keep the earlier epoch
                best_accuracy, self.best_epoch = val_accuracy, epoch
                self.best_state = copy.deepcopy(self.model.state_dict())

    def final_metrics(self) -> dict:
        """Load the best epoch's weights and score them on test (or val when there is no test split)."""
        self.model.load_state_dict(self.best_state)
        split_name = "test" if "test" in self.inputs else "val"
        metrics: dict = {"evaluated_on": split_name}
        for name in ("val", "test"):
            if name in self.inputs:
                _, accuracy, predicted = evaluate(self.model, self.forward, self.inputs[name],
                                                  criterion=self.criterion, batch_size=self.hp["batch_size"],
                                                  normalize=self.normalize)
                metrics[f"{name}_accuracy"] = accuracy
                if name == split_name:
                    report = classification_metrics(predicted, self.inputs[name].labels, self.classes)
                    metrics.update(per_class=report["per_class"], confusion_matrix=report["confusion_matrix"])
        return metrics

    def save(self, out_dir: Path) -> Path:
        """Write model.safetensors and config.json (the current, i.e. best, weights)."""
        config = model_config(arch=self.arch, classes=self.classes, dropout=self.dropout,
                              preprocessing=self.prep, in_features=A.head_in_features(self.model, self.arch))
        return save_artifact(self.model, config, Path(out_dir))

    def cleanup(self) -> None:
        """Drop the decoded data and the model so a long-lived worker gets its memory back."""
        for name in ("splits", "inputs", "forward", "model", "optimizer", "best_state"):
            self.__dict__.pop(name, None)


def run_training(*, spec: dict, archive_path: Path, manifest: dict, weights_path: Path | None, out_dir: Path,
                 logger: MetricLogger, should_stop: Callable[[], bool] = lambda: False) -> TrainResult:
    """Fine-tune as the spec says and save the best epoch's model into out_dir."""
    recipe = Recipe(spec, logger=logger, should_stop=should_stop)
    try:
        recipe.setup(archive_path=archive_path, manifest=manifest, weights_path=weights_path)
        recipe.train()
        metrics = recipe.final_metrics()
        model_dir = recipe.save(out_dir)
        return TrainResult(model_dir=model_dir, best_epoch=recipe.best_epoch, metrics=metrics)
    finally:
        recipe.cleanup()
