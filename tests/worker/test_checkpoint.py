"""Checkpoints: written before each epoch is logged, and a resumed run ends exactly where a straight one does."""

import pytest
import torch
from safetensors.torch import load_file

from tests.worker.conftest import RecordingLogger, assert_same_numbers, assert_same_tensors
from worker.training.checkpoint import load_checkpoint
from worker.training.recipe import run_training

TIMING = {"images_per_second", "seconds"}


class Crash(Exception):
    pass


def _strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


# A phase change, augmentation, dropout, momentum and a schedule: every state a checkpoint must carry.
BUSY = {"base_model": {"arch": "mobilenet_v3_small", "weights": "none"}, "head": {"dropout": 0.2},
        "freeze": {"policy": "lp_ft", "head_epochs": 2},
        "hyperparameters": {"epochs": 3, "optimizer": "sgd", "learning_rate": 0.05, "scheduler": "cosine",
                            "warmup_epochs": 1, "augment": "light", "precision": "fp16"}}


@pytest.mark.parametrize("sections", [{"hyperparameters": {"epochs": 3}}, BUSY], ids=["plain", "busy"])
def test_a_resumed_run_matches_a_straight_run(squares, make_spec, tmp_path, sections):
    archive, manifest, _ = squares
    spec = make_spec(**sections)
    straight_logger, seen = RecordingLogger(), []

    def record(epoch, path):
        assert len(straight_logger.epochs) == epoch - 1  # stored before the epoch is logged
        seen.append((epoch, path.name))

    straight = run_training(spec=spec, archive_path=archive, manifest=manifest, weights_path=None,
                            out_dir=tmp_path / "straight", logger=straight_logger,
                            checkpoint_dir=tmp_path / "ck1", on_checkpoint=record)
    assert seen == [(1, "epoch-1.pt"), (2, "epoch-2.pt"), (3, "epoch-3.pt")]
    assert [p.name for p in (tmp_path / "ck1").iterdir()] == ["epoch-3.pt"]  # older ones go once logged

    def crash_after_two(epoch, path):
        if epoch == 2:
            raise Crash
    crashed = RecordingLogger()
    with pytest.raises(Crash):
        run_training(spec=spec, archive_path=archive, manifest=manifest, weights_path=None,
                     out_dir=tmp_path / "crashed", logger=crashed, checkpoint_dir=tmp_path / "ck2",
                     on_checkpoint=crash_after_two)
    assert [m["epoch"] for m in crashed.epochs] == [1]  # epoch 2 was checkpointed but never logged
    checkpoint = tmp_path / "ck2" / "epoch-2.pt"
    assert load_checkpoint(checkpoint)["epoch"] == 2

    resumed_logger = RecordingLogger()
    resumed = run_training(spec=spec, archive_path=archive, manifest=manifest, weights_path=None,
                           out_dir=tmp_path / "resumed", logger=resumed_logger, resume_from=checkpoint)
    assert [m["epoch"] for m in resumed_logger.epochs] == [3]
    assert ("resumed from checkpoint", {"epoch": 2}) in resumed_logger.events
    assert_same_numbers(_strip(resumed_logger.epochs), _strip(straight_logger.epochs[2:]))
    assert_same_numbers(resumed.metrics, straight.metrics)
    assert resumed.best_epoch == straight.best_epoch
    a = load_file(str(straight.model_dir / "model.safetensors"))
    b = load_file(str(resumed.model_dir / "model.safetensors"))
    assert_same_tensors(a, b)


def test_checkpoints_refuse_foreign_files(tmp_path):
    torch.save({"hello": 1}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="checkpoint"):
        load_checkpoint(tmp_path / "x.pt")


def test_a_checkpoint_of_another_spec_is_refused(squares, make_spec, tmp_path):
    archive, manifest, _ = squares
    spec = make_spec(base_model={"arch": "mobilenet_v3_small", "weights": "none"}, freeze={"policy": "head_only"},
                     hyperparameters={"epochs": 1})
    run_training(spec=spec, archive_path=archive, manifest=manifest, weights_path=None, out_dir=tmp_path / "a",
                 logger=RecordingLogger(), checkpoint_dir=tmp_path / "ck")
    other = make_spec(base_model={"arch": "mobilenet_v3_small", "weights": "none"}, freeze={"policy": "head_only"},
                      hyperparameters={"epochs": 2, "learning_rate": 0.5})
    with pytest.raises(ValueError, match="another spec"):
        run_training(spec=other, archive_path=archive, manifest=manifest, weights_path=None, out_dir=tmp_path / "b",
                     logger=RecordingLogger(), resume_from=tmp_path / "ck" / "epoch-1.pt")
