"""Freezing over block groups: frozen parameters get no gradient and frozen BN keeps its statistics.

Every policy freezes a prefix of the backbone (core.plan.frozen_count says how long, per epoch), so a
model's state is "the first `cut` backbone groups are frozen".
"""

from torch import nn

from worker.training.architectures import HEAD, get_arch, group_names

POLICIES = ("head_only", "until", "none")  # the static ones; gradual and lp_ft change the cut per epoch


def frozen_groups(arch: str, policy: str, until: str | None = None) -> list[str]:
    """The block groups a static policy freezes, in forward order; ValueError for a bad policy or group."""
    names = group_names(arch)
    if policy == "none":
        return []
    if policy == "head_only":
        return names[:-1]
    if policy == "until":
        if until not in names[:-1]:
            raise ValueError(f"freeze.until must name a block group of {arch} before {HEAD!r}: "
                             f"one of {names[:-1]}, got {until!r}")
        return names[: names.index(until) + 1]
    raise ValueError(f"unsupported freeze policy {policy!r}; supported: {', '.join(POLICIES)}")


def _modules(model: nn.Module, arch: str, groups: list[str]) -> list[nn.Module]:
    return [model.get_submodule(prefix) for name, prefixes in get_arch(arch).groups if name in groups
            for prefix in prefixes]


def set_frozen_prefix(model: nn.Module, arch: str, cut: int) -> None:
    """The first `cut` backbone groups get no gradient; every later group and the head train."""
    names = group_names(arch)
    for index, name in enumerate(names):
        for module in _modules(model, arch, [name]):
            module.requires_grad_(not (index < cut and name != HEAD))


def set_modes(model: nn.Module, arch: str, cut: int, *, training: bool, batch_norm: str = "frozen") -> None:
    """train() or eval() the model; with batch_norm="frozen" the first `cut` groups stay in eval either way."""
    model.train(training)
    if training and batch_norm == "frozen":
        # eval keeps BN running statistics and turns off dropout / stochastic depth in frozen parts.
        for module in _modules(model, arch, group_names(arch)[:cut]):
            module.eval()


def _stay_in_eval(module: nn.Module, args: tuple) -> None:
    # A later model.train() flips `training` back on; undo it before the module runs.
    if module.training:
        module.eval()


def apply_freeze(model: nn.Module, arch: str, groups: list[str], *, batch_norm: str = "frozen") -> None:
    """Freeze `groups` for good (hooks keep them in eval): for code that calls model.train() itself."""
    if batch_norm not in ("frozen", "train"):
        raise ValueError(f"freeze.batch_norm must be 'frozen' or 'train', got {batch_norm!r}")
    for module in _modules(model, arch, groups):
        module.requires_grad_(False)
        if batch_norm == "frozen":
            module.eval()
            module.register_forward_pre_hook(_stay_in_eval)
