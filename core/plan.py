"""The training plan of a spec, from the catalogue alone: which block groups train when, at what rate.

The worker follows the same functions (`frozen_count`, `group_learning_rates`), so the dry run's plan is
the schedule a job runs.
"""

from functools import cache
from typing import Any

from core import catalog
from core.spec import (
    Augment,
    BatchNormPolicy,
    FreezePolicy,
    JobSpec,
    effective_head_epochs,
    effective_lr_decay,
)

HEAD = "head"


def backbone_groups(spec: JobSpec) -> list[str]:
    """The block groups before the head, in forward order."""
    return list(_backbone(spec.base_model.arch))


@cache
def _backbone(arch: str) -> tuple[str, ...]:
    return tuple(n for n in catalog.block_group_names(arch) if n != HEAD)


def frozen_count(spec: JobSpec, epoch: int) -> int:
    """How many leading backbone groups are frozen in `epoch` (1-based); every policy freezes a prefix."""
    groups = _backbone(spec.base_model.arch)
    policy = spec.freeze.policy
    if policy == FreezePolicy.none:
        return 0
    if policy == FreezePolicy.until:
        return groups.index(spec.freeze.until) + 1
    if policy == FreezePolicy.gradual:  # epoch 1 head only, then one more group per epoch from the top
        return max(0, len(groups) - (epoch - 1))
    if policy == FreezePolicy.lp_ft:
        return len(groups) if epoch <= effective_head_epochs(spec) else 0
    return len(groups)  # head_only


def group_learning_rates(spec: JobSpec) -> dict[str, float]:
    """Peak learning rate per block group (before warm-up and schedule): lp_ft divides by lr_decay per group down."""
    names = catalog.block_group_names(spec.base_model.arch)
    lr = spec.hyperparameters.learning_rate
    if spec.freeze.policy != FreezePolicy.lp_ft:
        return {n: lr for n in names}
    decay = effective_lr_decay(spec)
    return {n: lr / decay ** (len(names) - 1 - i) for i, n in enumerate(names)}


def features_cacheable(spec: JobSpec) -> bool:
    """Whether a frozen prefix maps each image to the same output every epoch (so it can run once)."""
    return (spec.freeze.batch_norm == BatchNormPolicy.frozen
            and spec.hyperparameters.augment == Augment.none)


def phases(spec: JobSpec) -> list[dict[str, Any]]:
    """Runs of epochs with the same frozen groups: first and last epoch, frozen and trainable groups."""
    groups, epochs = backbone_groups(spec), spec.hyperparameters.epochs
    out: list[dict[str, Any]] = []
    for epoch in range(1, epochs + 1):
        cut = frozen_count(spec, epoch)
        if out and out[-1]["_cut"] == cut:
            out[-1]["last_epoch"] = epoch
            continue
        out.append({"_cut": cut, "first_epoch": epoch, "last_epoch": epoch, "frozen_groups": groups[:cut],
                    "trainable_groups": [*groups[cut:], HEAD]})
    for phase in out:
        del phase["_cut"]
    return out


def plan(spec: JobSpec, num_classes: int) -> dict[str, Any]:
    """Per block group: parameters trainable (in some epoch) and frozen, learning rate, first trainable epoch."""
    arch = spec.base_model.arch
    counts = {g["name"]: g["param_count"] for g in catalog.get_arch(arch)["block_groups"]}
    counts[HEAD] = catalog.head_param_count(arch, num_classes)
    rates, epochs = group_learning_rates(spec), spec.hyperparameters.epochs
    cuts = [frozen_count(spec, e) for e in range(1, epochs + 1)]
    rows = []
    for index, name in enumerate(catalog.block_group_names(arch)):
        first = 1 if name == HEAD else next((e for e, cut in enumerate(cuts, 1) if index >= cut), None)
        n = counts[name]
        rows.append({"name": name, "trainable_params": n if first else 0, "frozen_params": 0 if first else n,
                     "learning_rate": rates[name] if first else 0.0, "trainable_from_epoch": first})
    cached = features_cacheable(spec) and cuts[0] == len(counts) - 1
    return {"block_groups": rows,
            "trainable_params": sum(r["trainable_params"] for r in rows),
            "frozen_params": sum(r["frozen_params"] for r in rows),
            "phases": phases(spec),
            # Backbone features computed once (and reused by later jobs on the same data and weights).
            "backbone_features_cached": cached}
