"""Optimizer with one parameter group per block group, and the learning-rate schedule, stepped per batch.

Every parameter is in the optimizer from the start; a frozen one has no gradient, so torch's optimizers
skip it, and unfreezing a group (gradual, lp_ft) is only a matter of requires_grad.
"""

import torch
from torch import nn
from torch.optim import lr_scheduler

from core.spec import JobSpec, effective_step
from worker.training.architectures import get_arch

WARMUP_START = 0.01  # warm-up starts at 1% of each group's rate


def build_optimizer(model: nn.Module, arch: str, spec: JobSpec, rates: dict[str, float]) -> torch.optim.Optimizer:
    """adam, adamw or sgd over per-block-group parameter groups (head last) at `rates`."""
    hp = spec.hyperparameters
    groups = []
    for name, prefixes in get_arch(arch).groups:
        params = [p for prefix in prefixes for p in model.get_submodule(prefix).parameters()]
        groups.append({"params": params, "lr": rates[name], "name": name})
    if hp.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=hp.learning_rate, momentum=hp.momentum, nesterov=hp.nesterov,
                               weight_decay=hp.weight_decay)
    if hp.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    return torch.optim.Adam(groups, lr=hp.learning_rate, weight_decay=hp.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, spec: JobSpec,
                    steps_per_epoch: int) -> lr_scheduler.LRScheduler | None:
    """The spec's schedule over all steps, after a linear warm-up of warmup_epochs; None for a constant rate."""
    hp = spec.hyperparameters
    total, warmup = hp.epochs * steps_per_epoch, hp.warmup_epochs * steps_per_epoch
    if hp.scheduler == "onecycle":  # check_combinations refuses warmup_epochs here: onecycle warms up itself
        return lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                       total_steps=total)
    main: lr_scheduler.LRScheduler | None = None
    if hp.scheduler == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup))
    elif hp.scheduler == "step":
        size, gamma = effective_step(spec)
        main = lr_scheduler.StepLR(optimizer, step_size=size * steps_per_epoch, gamma=gamma)
    if warmup == 0:
        return main
    warm = lr_scheduler.LinearLR(optimizer, start_factor=WARMUP_START, end_factor=1.0, total_iters=warmup)
    if main is None:
        return warm  # stays at factor 1 after warm-up
    return lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup])
