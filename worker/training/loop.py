"""One training epoch and one evaluation pass over in-memory splits, plus the final classification metrics.

A split holds either uint8 images (the frozen prefix runs per batch) or the frozen prefix's cached output
for the current cut (`cached=True`), in which case only the trainable groups run.
"""

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from worker.training.data import Split
from worker.training.device import to_device
from worker.training.errors import TrainingCancelled
from worker.training.network import Network
from worker.training.objective import Objective

__all__ = ["TrainingCancelled", "batch_slices", "classification_metrics", "evaluate", "train_one_epoch"]


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Consecutive batches; a last batch of one image joins the one before (BN cannot train on one)."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [slice(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]


def train_one_epoch(net: Network, split: Split, *, cut: int, cached: bool, objective: Objective,
                    optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler, batch_size: int,
                    generator: torch.Generator, augment: Callable[[Tensor], Tensor] | None,
                    grad_clip: float | None, should_stop: Callable[[], bool]) -> dict:
    """Shuffle and step through every batch; returns task loss, accuracy, images/s and seconds."""
    start = time.perf_counter()
    device = net.device
    # Shuffled on the CPU with the job's generator: the same order on every device.
    order = torch.randperm(len(split), generator=generator)
    on_device = split.images.device == device  # a cached prefix computed here stays here
    trainable = [p for p in net.model.parameters() if p.requires_grad]
    # Accumulated on the device: reading a number per step (.item(), .cpu()) would wait for the GPU every step.
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for batch in batch_slices(len(split), batch_size):
        if should_stop():
            raise TrainingCancelled("training was cancelled")
        idx = order[batch]
        labels = to_device(split.labels[idx], device)
        x = split.images[to_device(idx, device) if on_device else idx]
        # Uncached: augmentation works on the CPU's uint8 images; only the result crosses to the device.
        hidden = to_device(x, device) if cached else net.prefix(net.prepare(augment(x) if augment else x), cut)
        features, logits = net.forward_from(hidden, cut)
        task = objective.task_loss(logits, labels)
        pre = objective.pre_loss(net.model, hidden=hidden, features=features, cut=cut, run=net.run)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(objective.combine(task, pre)).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
            torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()  # per batch: warm-up and annealing are smooth within an epoch
        total_loss += task.detach() * len(idx)
        correct += (logits.detach().argmax(1) == labels).sum()
    loss, right = total_loss.item(), correct.item()  # waits for the device: the epoch's time includes its work
    seconds = time.perf_counter() - start
    return {"loss": loss / len(split), "accuracy": right / len(split),
            "images_per_second": len(split) / seconds, "seconds": seconds}


def evaluate(net: Network, split: Split, *, cut: int, cached: bool, batch_size: int) -> Tensor:
    """Logits (fp32, on the CPU) for every item of the split, with the model in eval mode.

    Scores and metrics are computed from these on the CPU, whatever device the model runs on."""
    net.model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(split), batch_size):
            x = split.images[i: i + batch_size]
            hidden = to_device(x, net.device) if cached else net.prefix(net.prepare(x), cut)
            out.append(net.forward_from(hidden, cut)[1].float())
    return torch.cat(out).cpu()


def epoch_scores(logits: Tensor, labels: Tensor) -> dict[str, float]:
    """val_loss (plain cross-entropy), val_accuracy, and val_top5_accuracy when there are more than 5 classes."""
    scores = {"val_loss": F.cross_entropy(logits, labels).item(),
              "val_accuracy": (logits.argmax(1) == labels).float().mean().item()}
    if logits.shape[1] > 5:
        top5 = logits.topk(5, dim=1).indices
        scores["val_top5_accuracy"] = (top5 == labels[:, None]).any(1).float().mean().item()
    return scores


def classification_metrics(predicted: Tensor, labels: Tensor, classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix (rows: true class)."""
    from torchmetrics.functional import classification as M

    n = len(classes)
    # A class never predicted (or never present) scores 0, as scikit-learn's zero_division=0.
    kwargs = {"num_classes": n, "average": "none", "zero_division": 0}
    precision = M.multiclass_precision(predicted, labels, **kwargs)
    recall = M.multiclass_recall(predicted, labels, **kwargs)
    f1 = M.multiclass_f1_score(predicted, labels, **kwargs)
    confusion = M.multiclass_confusion_matrix(predicted, labels, num_classes=n)
    support = confusion.sum(1)
    per_class = {c: {"precision": precision[i].item(), "recall": recall[i].item(), "f1": f1[i].item(),
                     "support": int(support[i].item())} for i, c in enumerate(classes)}
    accuracy = M.multiclass_accuracy(predicted, labels, num_classes=n, average="micro").item() if len(labels) else 0.0
    return {"accuracy": accuracy, "per_class": per_class, "confusion_matrix": confusion.tolist()}


def top5_accuracy(logits: Tensor, labels: Tensor) -> float:
    """Share of items whose true class is among the 5 highest logits."""
    from torchmetrics.functional.classification import multiclass_accuracy

    return multiclass_accuracy(logits, labels, num_classes=logits.shape[1], top_k=5, average="micro").item()
