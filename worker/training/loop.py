"""One training epoch and one evaluation pass over in-memory uint8 splits, plus classification metrics."""

import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from worker.training.data import Split

Forward = Callable[[Tensor], Tensor]


class TrainingCancelled(Exception):
    """should_stop() asked the run to end; nothing is saved."""


def train_one_epoch(model: nn.Module, forward: Forward, split: Split, *, optimizer: torch.optim.Optimizer,
                    criterion: nn.Module, batch_size: int, normalize: Callable[[Tensor], Tensor],
                    generator: torch.Generator, should_stop: Callable[[], bool]) -> dict:
    """Shuffle, step through every batch; returns loss, accuracy, images/s and seconds."""
    model.train()  # frozen groups stay in eval through their forward pre-hooks
    start = time.perf_counter()
    order = torch.randperm(len(split), generator=generator)
    total_loss, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    for i in range(0, len(split), batch_size):
        if should_stop():
            raise TrainingCancelled("training was cancelled")
        idx = order[i: i + batch_size]
        labels = split.labels[idx]
        logits = forward(normalize(split.images[idx]))
        loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # Accumulate as tensors: .item() per step would be a sync point on an accelerator.
        total_loss += loss.detach() * len(idx)
        correct += (logits.argmax(1) == labels).sum()
    seconds = time.perf_counter() - start
    return {"loss": total_loss.item() / len(split), "accuracy": correct.item() / len(split),
            "images_per_second": len(split) / seconds, "seconds": seconds}


@torch.no_grad()
def evaluate(model: nn.Module, forward: Forward, split: Split, *, criterion: nn.Module, batch_size: int,
             normalize: Callable[[Tensor], Tensor]) -> tuple[float, float, Tensor]:
    """Mean loss, accuracy and the predicted labels, with the model in eval mode."""
    model.eval()
    total_loss, preds = torch.zeros(()), []
    for i in range(0, len(split), batch_size):
        logits = forward(normalize(split.images[i: i + batch_size]))
        total_loss += criterion(logits, split.labels[i: i + batch_size]) * len(logits)
        preds.append(logits.argmax(1))
    predicted = torch.cat(preds)
    return total_loss.item() / len(split), (predicted == split.labels).float().mean().item(), predicted


def classification_metrics(predicted: Tensor, labels: Tensor, classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix (rows: true class)."""
    n = len(classes)
    confusion = torch.bincount(labels * n + predicted, minlength=n * n).view(n, n)
    tp = confusion.diag().double()
    predicted_count, support = confusion.sum(0).double(), confusion.sum(1).double()
    # 0/0 (a class never predicted or never present) counts as 0, as scikit-learn's zero_division=0.
    precision = torch.where(predicted_count > 0, tp / predicted_count.clamp(min=1), 0.0)
    recall = torch.where(support > 0, tp / support.clamp(min=1), 0.0)
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both.clamp(min=1e-12), 0.0)
    per_class = {c: {"precision": precision[i].item(), "recall": recall[i].item(), "f1": f1[i].item(),
                     "support": int(support[i].item())} for i, c in enumerate(classes)}
    return {"accuracy": tp.sum().item() / max(len(labels), 1), "per_class": per_class,
            "confusion_matrix": confusion.tolist()}
