"""Pure domain rules: the spec, the lifecycle, the plan."""

import pytest
from pydantic import ValidationError

from core import catalog
from core.plan import frozen_count, group_learning_rates, plan
from core.spec import InvalidCombination, JobSpec, SpecTooLarge, check_batch_pixels, check_combinations
from core.states import FINISHED, JobStatus, can_transition


def test_spec_defaults_resolve():
    spec = JobSpec(dataset_id="ds_abc")
    assert spec.base_model.arch == "efficientnet_lite0" and spec.base_model.weights == "imagenet"
    assert spec.freeze.policy == "head_only" and spec.hyperparameters.optimizer == "adam"
    assert JobSpec.model_validate(spec.model_dump(mode="json")) == spec  # round-trips as the worker sees it


@pytest.mark.parametrize("body", [
    {"base_model": {"arch": "alexnet_nope"}},
    {"base_model": {"arch": "resnet18", "weights": "../../etc/passwd"}},
    {"freeze": {"policy": "until"}},
    {"freeze": {"policy": "until", "until": "head"}},
    {"freeze": {"policy": "gradual", "head_epochs": 0}},
    {"freeze": {"policy": "lp_ft", "lr_decay": 0.5}},
    {"freeze": {"batch_norm": "sometimes"}},
    {"hyperparameters": {"batch_size": 0}},
    {"hyperparameters": {"batch_size": 100000}},
    {"hyperparameters": {"optimizer": "lbfgs"}},
    {"hyperparameters": {"learning_rate": -1}},
    {"regularization": {"kind": "ewc", "alpha": 0.5}},
    {"regularization": {"kind": "l2sp", "alpha": 1.5}},
    {"hyperparameters": {"scheduler": "cyclic"}},
    {"hyperparameters": {"augment": "extreme"}},
    {"hyperparameters": {"precision": "fp8"}},
    {"hyperparameters": {"label_smoothing": 0.9}},
    {"hyperparameters": {"early_stopping": {"patience": 0}}},
    {"hyperparameters": {"early_stopping": {"monitor": "train_loss"}}},
    {"hyperparameters": {"warmup_epochs": -1}},
    {"hyperparameters": {"grad_clip": 0}},
    {"unknown_field": 1},
])
def test_spec_refuses_bad_input(body):
    with pytest.raises(ValidationError):
        JobSpec.model_validate({"dataset_id": "ds_abc", **body})


def test_lifecycle_transitions():
    assert can_transition(JobStatus.queued, JobStatus.running)
    assert can_transition(JobStatus.running, JobStatus.queued)  # worker lost, retried
    assert not can_transition(JobStatus.queued, JobStatus.succeeded)
    for final in FINISHED:
        assert not any(can_transition(final, dst) for dst in JobStatus)


@pytest.mark.parametrize("arch", catalog.arch_names())
def test_plan_covers_every_parameter(arch):
    groups = catalog.block_group_names(arch)
    assert groups[-1] == "head"
    spec = JobSpec(dataset_id="ds_a", base_model={"arch": arch, "weights": "none"},
                   freeze={"policy": "until", "until": groups[1]})
    p = plan(spec, num_classes=3)
    names = [g["name"] for g in p["block_groups"]]
    assert names == groups
    assert [g["trainable_params"] > 0 for g in p["block_groups"]] == [False, False] + [True] * (len(groups) - 2)
    head_only = plan(JobSpec(dataset_id="ds_a", base_model={"arch": arch, "weights": "none"}), num_classes=3)
    assert head_only["trainable_params"] == catalog.head_param_count(arch, 3)


def _spec(**sections) -> JobSpec:
    body = {"dataset_id": "ds_a", "base_model": {"arch": "resnet18", "weights": "imagenet"}}
    return JobSpec.model_validate({**body, **sections})


def test_every_documented_field_has_a_default():
    hp = JobSpec(dataset_id="ds_a").hyperparameters
    assert (hp.scheduler, hp.augment, hp.precision, hp.early_stopping, hp.deterministic) == \
        ("none", "none", "auto", None, True)
    full = _spec(freeze={"policy": "lp_ft", "head_epochs": 2, "lr_decay": 10, "batch_norm": "train"},
                 hyperparameters={"epochs": 6, "optimizer": "sgd", "nesterov": True, "scheduler": "step",
                                  "step_size": 2, "gamma": 0.5, "warmup_epochs": 1, "label_smoothing": 0.1,
                                  "grad_clip": 1.0, "augment": "strong", "precision": "bf16",
                                  "early_stopping": {"patience": 2, "min_delta": 0.01, "monitor": "val_accuracy"}},
                 regularization={"kind": "distill", "alpha": 0.3})
    check_combinations(full)
    assert JobSpec.model_validate(full.model_dump(mode="json")) == full


@pytest.mark.parametrize("sections, field", [
    ({"regularization": {"kind": "l2sp", "alpha": 0.1}}, "regularization"),  # default policy head_only
    ({"freeze": {"policy": "head_only"}, "regularization": {"kind": "none", "alpha": 0.2}}, "regularization"),
    ({"freeze": {"policy": "none"}, "regularization": {"kind": "none", "alpha": 0.2}}, "regularization.alpha"),
    ({"freeze": {"policy": "none"}, "regularization": {"kind": "distill", "alpha": 0.0}}, "regularization.alpha"),
    ({"freeze": {"policy": "none"}, "regularization": {"kind": "l2sp", "alpha": 1.0}}, "regularization.alpha"),
    ({"freeze": {"policy": "none"}, "regularization": {"kind": "l2sp", "alpha": 0.1},
      "base_model": {"arch": "resnet18", "weights": "none"}}, "regularization"),
    ({"freeze": {"policy": "head_only", "until": "layer1"}}, "freeze.until"),
    ({"freeze": {"policy": "gradual", "head_epochs": 2}}, "freeze.head_epochs"),
    ({"freeze": {"policy": "none", "lr_decay": 3}}, "freeze.lr_decay"),
    ({"freeze": {"policy": "lp_ft", "head_epochs": 5}}, "freeze.head_epochs"),  # epochs default 5
    ({"freeze": {"policy": "lp_ft"}, "hyperparameters": {"epochs": 1}}, "freeze.head_epochs"),
    ({"hyperparameters": {"epochs": 3, "warmup_epochs": 3}}, "hyperparameters.warmup_epochs"),
    ({"hyperparameters": {"scheduler": "onecycle", "warmup_epochs": 1}}, "hyperparameters.warmup_epochs"),
    ({"hyperparameters": {"scheduler": "cosine", "step_size": 2}}, "hyperparameters.step_size"),
    ({"hyperparameters": {"gamma": 0.5}}, "hyperparameters.gamma"),
    ({"hyperparameters": {"optimizer": "adam", "nesterov": True}}, "hyperparameters.nesterov"),
    ({"hyperparameters": {"optimizer": "sgd", "momentum": 0, "nesterov": True}}, "hyperparameters.nesterov"),
])
def test_meaningless_combinations_are_refused(sections, field):
    spec = _spec(**sections)  # each field is valid on its own
    with pytest.raises(InvalidCombination) as info:
        check_combinations(spec)
    assert info.value.field == field


@pytest.mark.parametrize("batch_size,image_size,limit,refused", [
    (512, 512, 256 * 224 * 224, True), (256, 224, 256 * 224 * 224, False), (256, 224, 256 * 224 * 224 - 1, True)])
def test_a_batch_over_the_cap_is_refused_by_the_one_rule(batch_size, image_size, limit, refused):
    """One rule (core.spec.check_batch_pixels) for one setting (TAAS_MAX_BATCH_PIXELS): the API applies it at
    submit and the worker with the value the claim sends; the combinations check no longer has its own cap."""
    spec = _spec(hyperparameters={"batch_size": batch_size, "image_size": image_size})
    check_combinations(spec)
    if refused:
        with pytest.raises(SpecTooLarge) as info:
            check_batch_pixels(spec, limit)
        assert info.value.pixels == batch_size * image_size**2 and info.value.limit == limit
    else:
        check_batch_pixels(spec, limit)


def test_meaningful_combinations_pass():
    for sections in ({}, {"freeze": {"policy": "until", "until": "layer3"}},
                     {"freeze": {"policy": "lp_ft"}}, {"freeze": {"policy": "gradual"}},
                     {"freeze": {"policy": "none"}, "regularization": {"kind": "l2sp", "alpha": 0.01}},
                     {"hyperparameters": {"scheduler": "step"}},
                     {"hyperparameters": {"scheduler": "cosine", "warmup_epochs": 2}}):
        check_combinations(_spec(**sections))


def test_gradual_plan_unfreezes_one_group_per_epoch_from_the_top():
    spec = _spec(freeze={"policy": "gradual"}, hyperparameters={"epochs": 4})
    rows = {r["name"]: r for r in plan(spec, num_classes=3)["block_groups"]}
    assert [frozen_count(spec, e) for e in range(1, 5)] == [5, 4, 3, 2]
    assert {n: r["trainable_from_epoch"] for n, r in rows.items()} == \
        {"stem": None, "layer1": None, "layer2": 4, "layer3": 3, "layer4": 2, "head": 1}
    assert rows["layer1"]["frozen_params"] > 0 and rows["layer1"]["learning_rate"] == 0.0
    assert rows["layer2"]["trainable_params"] > 0 and rows["layer2"]["learning_rate"] == 1e-3
    assert [p["first_epoch"] for p in plan(spec, 3)["phases"]] == [1, 2, 3, 4]


def test_lp_ft_plan_shows_discriminative_rates():
    spec = _spec(freeze={"policy": "lp_ft", "head_epochs": 2, "lr_decay": 10},
                 hyperparameters={"epochs": 5, "learning_rate": 0.1})
    p = plan(spec, num_classes=3)
    rates = {r["name"]: r["learning_rate"] for r in p["block_groups"]}
    assert rates == pytest.approx({"head": 0.1, "layer4": 0.01, "layer3": 1e-3, "layer2": 1e-4, "layer1": 1e-5,
                                   "stem": 1e-6})
    assert rates == pytest.approx(group_learning_rates(spec))
    assert [(ph["first_epoch"], ph["last_epoch"], ph["frozen_groups"]) for ph in p["phases"]] == \
        [(1, 2, ["stem", "layer1", "layer2", "layer3", "layer4"]), (3, 5, [])]
    assert all(r["trainable_from_epoch"] == (1 if r["name"] == "head" else 3) for r in p["block_groups"])
    assert p["frozen_params"] == 0 and p["backbone_features_cached"]
    default = _spec(freeze={"policy": "lp_ft"}, hyperparameters={"epochs": 5})
    assert [frozen_count(default, e) for e in range(1, 6)] == [5, 5, 0, 0, 0]  # half the epochs, rounded down
    assert group_learning_rates(default)["layer4"] == pytest.approx(1e-3 / 2.6)


def test_feature_cache_shows_in_the_plan():
    assert plan(_spec(), 3)["backbone_features_cached"]
    assert not plan(_spec(hyperparameters={"augment": "light"}), 3)["backbone_features_cached"]
    assert not plan(_spec(freeze={"policy": "head_only", "batch_norm": "train"}), 3)["backbone_features_cached"]
    assert not plan(_spec(freeze={"policy": "none"}), 3)["backbone_features_cached"]
