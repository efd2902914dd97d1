"""Freeze policies in real runs: which block groups change in which epoch, at which learning rate."""

import pytest
import torch

from core.plan import group_learning_rates
from core.spec import JobSpec
from tests.worker.conftest import RecordingLogger
from worker.training import architectures as A
from worker.training.checkpoint import load_checkpoint
from worker.training.recipe import run_training

ARCH = "mobilenet_v3_small"  # stem, stage1-5, top, head: small and quick at 32 px


def _initial(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)  # the recipe seeds before building, so this is the model it starts from
    return A.build_model(ARCH, 3).state_dict()


def _run(squares, make_spec, tmp_path, **sections):
    """Train and return (logger, {epoch: checkpoint dict}, result)."""
    archive, manifest, _ = squares
    checkpoints = {}
    sections.setdefault("base_model", {"arch": ARCH, "weights": "none"})
    logger = RecordingLogger()
    result = run_training(spec=make_spec(**sections), archive_path=archive, manifest=manifest, weights_path=None,
                          out_dir=tmp_path / "model", logger=logger, checkpoint_dir=tmp_path / "ck",
                          on_checkpoint=lambda epoch, path: checkpoints.update({epoch: load_checkpoint(path)}))
    return logger, checkpoints, result


def _changed_groups(state: dict[str, torch.Tensor], initial: dict[str, torch.Tensor]) -> set[str]:
    return {A.group_of(ARCH, k) for k, v in state.items() if not torch.equal(v, initial[k])}


def _messages(logger: RecordingLogger) -> list[str]:
    return [message for message, _ in logger.events]


def test_gradual_unfreezes_one_group_per_epoch_from_the_top(squares, make_spec, tmp_path):
    logger, checkpoints, _ = _run(squares, make_spec, tmp_path, freeze={"policy": "gradual"})
    initial = _initial()
    # Checkpoints hold what training can change: here the groups that train by the last epoch.
    assert {A.group_of(ARCH, k) for k in checkpoints[1]["model"]} == {"stage5", "top", "head"}
    changed = {epoch: _changed_groups(c["model"], initial) for epoch, c in checkpoints.items()}
    assert changed == {1: {"head"}, 2: {"top", "head"}, 3: {"stage5", "top", "head"}}
    unfrozen = [data["groups"] for message, data in logger.events if message == "block groups unfrozen"]
    assert unfrozen == [["top"], ["stage5"]]
    # The frozen prefix runs once per phase: whole-backbone features, then shorter prefixes.
    assert _messages(logger).count("backbone features cached") == 1
    assert _messages(logger).count("frozen prefix cached") == 2


def test_lp_ft_trains_the_head_then_everything_with_discriminative_rates(squares, make_spec, tmp_path):
    sections = {"freeze": {"policy": "lp_ft", "head_epochs": 1, "lr_decay": 10.0},
                "hyperparameters": {"learning_rate": 0.01}}
    logger, checkpoints, _ = _run(squares, make_spec, tmp_path, **sections)
    initial = _initial()
    assert _changed_groups(checkpoints[1]["model"], initial) == {"head"}
    assert _changed_groups(checkpoints[2]["model"], initial) == set(A.group_names(ARCH))
    rates = [group["lr"] for group in checkpoints[3]["optimizer"]["param_groups"]]
    expected = group_learning_rates(JobSpec.model_validate(make_spec(base_model={"arch": ARCH, "weights": "none"},
                                                                     **sections)))
    assert rates == pytest.approx([expected[name] for name in A.group_names(ARCH)])
    assert rates[0] == pytest.approx(0.01 / 10**7) and rates[-1] == 0.01
    assert "block groups unfrozen" in _messages(logger)


def test_until_trains_only_after_the_cut_on_a_cached_prefix(squares, make_spec, tmp_path):
    logger, checkpoints, result = _run(squares, make_spec, tmp_path, freeze={"policy": "until", "until": "stage5"},
                                       hyperparameters={"epochs": 2})
    assert {A.group_of(ARCH, k) for k in checkpoints[2]["model"]} == {"top", "head"}
    assert _changed_groups(checkpoints[2]["model"], _initial()) == {"top", "head"}
    assert "frozen prefix cached" in _messages(logger)
    assert result.metrics["evaluated_on"] == "test"


def test_batch_norm_train_updates_statistics_of_frozen_groups(squares, make_spec, tmp_path):
    logger, checkpoints, _ = _run(squares, make_spec, tmp_path, freeze={"policy": "head_only", "batch_norm": "train"},
                                  hyperparameters={"epochs": 1})
    initial, state = _initial(), checkpoints[1]["model"]
    changed = {k for k, v in state.items() if not torch.equal(v, initial[k])}
    assert any(k.endswith("running_mean") and A.group_of(ARCH, k) == "stem" for k in changed)
    assert {A.group_of(ARCH, k) for k in changed if not k.endswith(("running_mean", "running_var",
                                                                    "num_batches_tracked"))} == {"head"}
    assert "backbone features cached" not in _messages(logger)  # batch statistics: features differ per batch


def test_head_only_checkpoints_hold_only_the_head(squares, make_spec, tmp_path):
    _, checkpoints, _ = _run(squares, make_spec, tmp_path, freeze={"policy": "head_only"},
                             hyperparameters={"epochs": 1})
    assert {A.group_of(ARCH, k) for k in checkpoints[1]["model"]} == {"head"}
