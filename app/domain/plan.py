"""The training plan of a spec, from the catalogue alone: which block groups train, at what rate."""

from typing import Any

from app.domain import catalog
from app.domain.spec import FreezePolicy, JobSpec


def trainable_groups(spec: JobSpec) -> list[tuple[str, bool]]:
    """(group name, trainable) in forward order."""
    names = catalog.block_group_names(spec.base_model.arch)
    policy = spec.freeze.policy
    if policy == FreezePolicy.none:
        return [(n, True) for n in names]
    if policy == FreezePolicy.head_only:
        return [(n, n == "head") for n in names]
    cut = names.index(spec.freeze.until) if spec.freeze.until in names else -1
    return [(n, i > cut) for i, n in enumerate(names)]


def plan(spec: JobSpec, num_classes: int) -> dict[str, Any]:
    """Per block group: parameter counts trainable and frozen, and the learning rate."""
    groups = {g["name"]: g for g in catalog.get_arch(spec.base_model.arch)["block_groups"]}
    lr = spec.hyperparameters.learning_rate
    rows = []
    for name, trains in trainable_groups(spec):
        n = (catalog.head_param_count(spec.base_model.arch, num_classes) if name == "head"
             else groups[name]["param_count"])
        rows.append({"name": name, "trainable_params": n if trains else 0,
                     "frozen_params": 0 if trains else n, "learning_rate": lr if trains else 0.0})
    return {"block_groups": rows,
            "trainable_params": sum(r["trainable_params"] for r in rows),
            "frozen_params": sum(r["frozen_params"] for r in rows)}
