"""Pure domain rules: the spec, the lifecycle, the plan."""

import pytest
from pydantic import ValidationError

from app.domain import catalog
from app.domain.plan import plan
from app.domain.spec import JobSpec
from app.domain.states import FINISHED, JobStatus, can_transition


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
    {"freeze": {"policy": "head_only", "until": "layer1"}},
    {"hyperparameters": {"batch_size": 0}},
    {"hyperparameters": {"batch_size": 100000}},
    {"hyperparameters": {"optimizer": "lbfgs"}},
    {"hyperparameters": {"learning_rate": -1}},
    {"regularization": {"kind": "l2sp", "alpha": 0.5}},
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
