"""Freeze policies over block groups: frozen parameters get no gradient and frozen BN keeps its statistics."""

from torch import nn

from worker.training.architectures import HEAD, get_arch, group_names

POLICIES = ("head_only", "until", "none")


def frozen_groups(arch: str, policy: str, until: str | None = None) -> list[str]:
    """The block groups a policy freezes, in forward order; ValueError for a bad policy or group."""
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


def _stay_in_eval(module: nn.Module, args: tuple) -> None:
    # A later model.train() flips `training` back on; undo it before the module runs.
    if module.training:
        module.eval()


def apply_freeze(model: nn.Module, arch: str, groups: list[str], *, batch_norm: str = "frozen") -> None:
    """Stop gradients into `groups`; with batch_norm="frozen" their modules also stay in eval mode."""
    if batch_norm not in ("frozen", "train"):
        raise ValueError(f"freeze.batch_norm must be 'frozen' or 'train', got {batch_norm!r}")
    for name, prefixes in get_arch(arch).groups:
        if name not in groups:
            continue
        for prefix in prefixes:
            module = model.get_submodule(prefix)
            module.requires_grad_(False)
            if batch_norm == "frozen":
                # eval keeps BN running statistics and turns off dropout / stochastic depth in frozen parts.
                module.eval()
                module.register_forward_pre_hook(_stay_in_eval)
