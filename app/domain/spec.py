"""The fine-tuning job spec: validated once, then frozen and passed to the worker as resolved JSON."""

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.domain import catalog


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FreezePolicy(StrEnum):
    head_only = "head_only"  # only the new head trains
    until = "until"  # the named block group and everything before it stay frozen
    none = "none"  # everything trains


class Optimizer(StrEnum):
    adam = "adam"
    sgd = "sgd"


class BaseModelSpec(_Strict):
    arch: str = "efficientnet_lite0"
    weights: str = Field("imagenet", pattern=r"^(imagenet|none|bm_[0-9a-z]+|model_[0-9a-z]+)$",
                         description="imagenet, none, a base model id (bm_…) or a model id (model_…)")


class FreezeSpec(_Strict):
    policy: FreezePolicy = FreezePolicy.head_only
    until: str | None = None
    batch_norm: Literal["frozen"] = "frozen"


class HeadSpec(_Strict):
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class Hyperparameters(_Strict):
    # Bounds keep a spec from exhausting a worker.
    epochs: int = Field(5, ge=1, le=200)
    batch_size: int = Field(32, ge=1, le=512)
    learning_rate: float = Field(1e-3, gt=0, le=10)
    optimizer: Optimizer = Optimizer.adam
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0, le=1)
    image_size: int = Field(224, ge=16, le=512)
    seed: int = Field(0, ge=0, le=2**31 - 1)


class RegularizationSpec(_Strict):
    kind: Literal["none"] = "none"
    alpha: float = Field(0.0, ge=0.0, le=0.0)


class JobSpec(_Strict):
    """A job spec as submitted; every field but dataset_id has a default."""

    dataset_id: str = Field(pattern=r"^ds_[0-9a-z]+$")
    base_model: BaseModelSpec = BaseModelSpec()
    freeze: FreezeSpec = FreezeSpec()
    head: HeadSpec = HeadSpec()
    hyperparameters: Hyperparameters = Hyperparameters()
    regularization: RegularizationSpec = RegularizationSpec()

    @model_validator(mode="after")
    def _check(self) -> "JobSpec":
        arch = catalog.get_arch(self.base_model.arch)
        if arch is None:
            raise ValueError(
                f"unknown arch {self.base_model.arch!r}; supported: {', '.join(catalog.arch_names())}"
            )
        groups = [g for g in catalog.block_group_names(self.base_model.arch) if g != "head"]
        if self.freeze.policy == FreezePolicy.until:
            if self.freeze.until not in groups:
                raise ValueError(f"freeze.until must be one of {groups} for {self.base_model.arch}")
        elif self.freeze.until is not None:
            raise ValueError("freeze.until is only meaningful with policy 'until'")
        return self
