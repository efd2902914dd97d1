"""The α objective: alpha * L_pre + (1 - alpha) * L_fin, with L_fin the task loss.

- l2sp: L_pre = Σ ||w - w_pre||² over the trainable backbone weights (Li et al. 2018, L2-SP);
- distill: L_pre = mean squared distance between the fine-tuned backbone's features and the frozen
  pretrained backbone's on the same batch (feature-level Learning without Forgetting).
"""

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worker.training import architectures as A


class Objective:
    """The training loss of a spec; `pretrained` is the model right after its base weights were loaded."""

    def __init__(self, pretrained: nn.Module, arch: str, *, kind: str, alpha: float, label_smoothing: float):
        self.kind, self.alpha, self.arch = kind, float(alpha), arch
        self.label_smoothing = label_smoothing
        if kind == "none" or self.alpha == 0:
            self.kind = "none"
        elif kind == "l2sp":
            # The pretrained values of every backbone weight (the head is new, so it has none).
            self.anchors = {name: p.detach().clone() for name, p in pretrained.named_parameters()
                            if A.group_of(arch, name) != A.HEAD}
        elif kind == "distill":
            self.teacher = copy.deepcopy(pretrained).eval().requires_grad_(False)
            self.teacher_stages = A.get_arch(arch).stage_fns(self.teacher)
        else:
            raise ValueError(f"unsupported regularization {kind!r}")

    def task_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy in fp32 whatever the autocast dtype, with the spec's label smoothing."""
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    def pre_loss(self, model: nn.Module, *, hidden: Tensor, features: Tensor, cut: int,
                 run: Callable[[list, Tensor], Tensor]) -> Tensor | None:
        """L_pre for one batch; `hidden` is the frozen prefix's output (the first `cut` groups), `features`
        the fine-tuned backbone's. None when nothing in the backbone trains (there is nothing to hold back)."""
        if self.kind == "none" or cut >= len(A.group_names(self.arch)) - 1:
            return None
        if self.kind == "l2sp":
            terms = [(p - self.anchors[name]).pow(2).sum() for name, p in model.named_parameters()
                     if p.requires_grad and name in self.anchors]
            return torch.stack(terms).sum()
        # The frozen prefix is the same in both networks, so the teacher starts from its output.
        with torch.no_grad():
            target = run(self.teacher_stages[cut:], hidden)
        return F.mse_loss(features.float(), target.float())

    def combine(self, task: Tensor, pre: Tensor | None) -> Tensor:
        """alpha * L_pre + (1 - alpha) * L_fin (just L_fin without a regulariser)."""
        if pre is None:
            return task
        return self.alpha * pre + (1.0 - self.alpha) * task
