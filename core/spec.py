"""The fine-tuning job spec: validated once, then frozen and passed to the worker as resolved JSON.

Pydantic checks each value on its own (types, bounds, names); `check_combinations` then refuses fields that
make no sense together with `InvalidCombination`, which the API renders as `422 invalid_combination`.
Optional fields left null take the documented value the worker derives (see `effective_*` below).
"""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core import catalog

DEFAULT_LR_DECAY = 2.6  # ULMFiT's discriminative factor between neighbouring layer groups
DEFAULT_STEP_GAMMA = 0.1


class InvalidCombination(ValueError):
    """Spec fields that are each valid but mean nothing together; `field` names the first offender."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FreezePolicy(StrEnum):
    head_only = "head_only"  # only the new head trains
    until = "until"  # the named block group and everything before it stay frozen
    none = "none"  # everything trains
    gradual = "gradual"  # head only in epoch 1, then one more block group per epoch, from the top
    lp_ft = "lp_ft"  # head only for head_epochs, then everything with discriminative learning rates


class BatchNormPolicy(StrEnum):
    frozen = "frozen"  # BN layers in frozen groups keep their running statistics (eval mode)
    train = "train"  # every BN layer updates its statistics, frozen groups included


class Optimizer(StrEnum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


class Scheduler(StrEnum):
    none = "none"  # constant learning rate (after any warm-up)
    cosine = "cosine"  # cosine annealing to 0 over the epochs after warm-up
    onecycle = "onecycle"  # OneCycleLR: its own warm-up to learning_rate, then annealing
    step = "step"  # multiply by gamma every step_size epochs


class Augment(StrEnum):
    none = "none"
    light = "light"  # random resized crop (scale 0.7-1) and horizontal flip
    strong = "strong"  # random resized crop (scale 0.35-1), flip, TrivialAugmentWide, random erasing


class Precision(StrEnum):
    auto = "auto"  # bf16 autocast where the hardware supports it, fp32 otherwise
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Monitor(StrEnum):
    val_loss = "val_loss"
    val_accuracy = "val_accuracy"


class RegularizationKind(StrEnum):
    none = "none"
    l2sp = "l2sp"  # squared distance of the trainable backbone weights to their pretrained values
    distill = "distill"  # mean squared distance of the backbone's features to the pretrained backbone's


class BaseModelSpec(_Strict):
    arch: str = "efficientnet_lite0"
    weights: str = Field("imagenet", pattern=r"^(imagenet|none|bm_[0-9a-z]+|model_[0-9a-z]+)$",
                         description="imagenet, none, a base model id (bm_…) or a model id (model_…)")


class FreezeSpec(_Strict):
    policy: FreezePolicy = FreezePolicy.head_only
    until: str | None = Field(None, description="policy until: the last frozen block group")
    head_epochs: int | None = Field(None, ge=1, le=200,
                                    description="lp_ft: head-only epochs; null: half the epochs")
    lr_decay: float | None = Field(None, ge=1.0, le=100.0,
                                   description=f"lp_ft: divisor per block group downwards; null: {DEFAULT_LR_DECAY}")
    batch_norm: BatchNormPolicy = BatchNormPolicy.frozen


class HeadSpec(_Strict):
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class EarlyStopping(_Strict):
    patience: int = Field(3, ge=1, le=200, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0.0, le=1.0, description="the smallest change that counts as improvement")
    monitor: Monitor = Monitor.val_loss


class Hyperparameters(_Strict):
    # Bounds keep a spec from exhausting a worker.
    epochs: int = Field(5, ge=1, le=200)
    batch_size: int = Field(32, ge=1, le=512)
    learning_rate: float = Field(1e-3, gt=0, le=10, description="the head's rate (and every group's but lp_ft's)")
    optimizer: Optimizer = Optimizer.adam
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    nesterov: bool = Field(False, description="sgd only")
    weight_decay: float = Field(0.0, ge=0, le=1, description="decoupled for adamw, L2 for adam and sgd")
    scheduler: Scheduler = Scheduler.none
    step_size: int | None = Field(None, ge=1, le=200, description="scheduler step: epochs; null: a third of them")
    gamma: float | None = Field(None, gt=0, le=1, description=f"scheduler step: factor; null: {DEFAULT_STEP_GAMMA}")
    warmup_epochs: int = Field(0, ge=0, le=50, description="linear warm-up from 1% of the rate")
    label_smoothing: float = Field(0.0, ge=0.0, le=0.5)
    grad_clip: float | None = Field(None, gt=0, le=1000, description="max global gradient norm; null: no clipping")
    image_size: int = Field(224, ge=16, le=512)
    augment: Augment = Augment.none
    early_stopping: EarlyStopping | None = None
    precision: Precision = Precision.auto
    seed: int = Field(0, ge=0, le=2**31 - 1)
    deterministic: bool = Field(True, description="deterministic kernels: the same spec and data give the same "
                                                  "metrics on the same hardware")


class RegularizationSpec(_Strict):
    kind: RegularizationKind = RegularizationKind.none
    alpha: float = Field(0.0, ge=0.0, le=1.0, description="loss = alpha * L_pre + (1 - alpha) * L_task")


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
        if self.freeze.policy == FreezePolicy.until:
            groups = [g for g in catalog.block_group_names(self.base_model.arch) if g != "head"]
            if self.freeze.until not in groups:
                raise ValueError(f"freeze.until must be one of {groups} for {self.base_model.arch}")
        return self


def effective_head_epochs(spec: JobSpec) -> int:
    """lp_ft's head-only epochs: as given, else half the epochs (at least 1)."""
    given = spec.freeze.head_epochs
    return given if given is not None else max(1, spec.hyperparameters.epochs // 2)


def effective_lr_decay(spec: JobSpec) -> float:
    """lp_ft's per-group divisor: as given, else DEFAULT_LR_DECAY."""
    return spec.freeze.lr_decay if spec.freeze.lr_decay is not None else DEFAULT_LR_DECAY


def effective_step(spec: JobSpec) -> tuple[int, float]:
    """The step scheduler's (step_size epochs, gamma): as given, else a third of the epochs and 0.1."""
    hp = spec.hyperparameters
    size = hp.step_size if hp.step_size is not None else max(1, hp.epochs // 3)
    return size, hp.gamma if hp.gamma is not None else DEFAULT_STEP_GAMMA


def _combination_errors(spec: JobSpec) -> list[tuple[str, str]]:
    freeze, hp, reg = spec.freeze, spec.hyperparameters, spec.regularization
    policy = freeze.policy
    errors: list[tuple[str, str]] = []

    def refuse(when: bool, field: str, message: str) -> None:
        if when:
            errors.append((field, message))

    refuse(freeze.until is not None and policy != FreezePolicy.until, "freeze.until",
           f"freeze.until is only meaningful with policy 'until', not {policy.value!r}")
    refuse(freeze.head_epochs is not None and policy != FreezePolicy.lp_ft, "freeze.head_epochs",
           f"freeze.head_epochs is only meaningful with policy 'lp_ft', not {policy.value!r}")
    refuse(freeze.lr_decay is not None and policy != FreezePolicy.lp_ft, "freeze.lr_decay",
           f"freeze.lr_decay is only meaningful with policy 'lp_ft', not {policy.value!r}")
    if policy == FreezePolicy.lp_ft:
        refuse(effective_head_epochs(spec) >= hp.epochs, "freeze.head_epochs",
               f"lp_ft trains the head alone for {effective_head_epochs(spec)} epoch(s), which leaves none of the "
               f"{hp.epochs} for fine-tuning: raise hyperparameters.epochs or lower freeze.head_epochs")
    regularized = reg.kind != RegularizationKind.none or reg.alpha > 0
    refuse(regularized and policy == FreezePolicy.head_only, "regularization",
           "a regulariser keeps trainable backbone weights near their pretrained values, but head_only trains "
           "no backbone weights")
    refuse(reg.kind == RegularizationKind.none and reg.alpha > 0, "regularization.alpha",
           "regularization.alpha > 0 needs a kind (l2sp or distill)")
    refuse(reg.kind != RegularizationKind.none and reg.alpha == 0, "regularization.alpha",
           f"regularization {reg.kind.value!r} with alpha 0 does nothing: set alpha in (0, 1)")
    refuse(reg.alpha == 1, "regularization.alpha", "alpha 1 ignores the task loss: set alpha below 1")
    refuse(regularized and spec.base_model.weights == "none", "regularization",
           "a regulariser pulls towards pretrained weights, but base_model.weights is 'none'")
    refuse(hp.warmup_epochs >= hp.epochs and hp.warmup_epochs > 0, "hyperparameters.warmup_epochs",
           f"warmup_epochs ({hp.warmup_epochs}) must be below epochs ({hp.epochs})")
    refuse(hp.warmup_epochs > 0 and hp.scheduler == Scheduler.onecycle, "hyperparameters.warmup_epochs",
           "onecycle warms up by itself: leave warmup_epochs at 0")
    for name in ("step_size", "gamma"):
        refuse(getattr(hp, name) is not None and hp.scheduler != Scheduler.step, f"hyperparameters.{name}",
               f"hyperparameters.{name} is only meaningful with scheduler 'step', not {hp.scheduler.value!r}")
    refuse(hp.nesterov and hp.optimizer != Optimizer.sgd, "hyperparameters.nesterov",
           f"nesterov is only meaningful with optimizer 'sgd', not {hp.optimizer.value!r}")
    refuse(hp.nesterov and hp.momentum == 0, "hyperparameters.nesterov", "nesterov needs momentum > 0")
    return errors


def check_combinations(spec: JobSpec) -> None:
    """Raise InvalidCombination for the first pair of fields that mean nothing together."""
    errors = _combination_errors(spec)
    if errors:
        field, message = errors[0]
        raise InvalidCombination(message, field=field)


class SpecTooLarge(ValueError):
    """One batch (batch_size × image_size² pixels) is over the worker's memory budget."""

    def __init__(self, pixels: int, limit: int):
        super().__init__(f"batch_size * image_size^2 is {pixels} pixels per batch, over the {limit} limit; "
                         "lower batch_size or image_size")
        self.pixels, self.limit = pixels, limit


def check_batch_pixels(spec: JobSpec, limit: int) -> None:
    """Raise SpecTooLarge when one batch is over limit: TAAS_MAX_BATCH_PIXELS, the API's setting, which refuses
    the spec at submit (422 spec_too_large) and sends the same number to the worker with the claim."""
    pixels = spec.hyperparameters.batch_size * spec.hyperparameters.image_size**2
    if pixels > limit:
        raise SpecTooLarge(pixels, limit)
