"""Every hyperparameter is honoured: optimizers, schedules with warm-up, augmentation, early stopping,
precision, and deterministic mode."""

import pytest
import torch

from core.spec import JobSpec
from tests.worker.conftest import RecordingLogger, assert_same_numbers, engine_device
from worker.training import architectures as A
from worker.training.augment import build_augment
from worker.training.network import autocast_dtype, cpu_supports_bf16
from worker.training.optim import build_optimizer, build_scheduler
from worker.training.recipe import Recipe, run_training

TIMING = {"images_per_second", "seconds"}
STEPS, EPOCHS, LR = 4, 5, 0.1


def _spec(**hp) -> JobSpec:
    return JobSpec.model_validate({"dataset_id": "ds_a", "freeze": {"policy": "none"},
                                   "base_model": {"arch": "mobilenet_v3_small", "weights": "none"},
                                   "hyperparameters": {"epochs": EPOCHS, "learning_rate": LR, **hp}})


def _rates(**hp) -> list[float]:
    """The head's learning rate at every step of a run (what the first batch of each step uses)."""
    spec = _spec(**hp)
    model = A.build_model("mobilenet_v3_small", 3)
    optimizer = build_optimizer(model, "mobilenet_v3_small", spec, {n: LR for n in A.group_names("mobilenet_v3_small")})
    scheduler = build_scheduler(optimizer, spec, STEPS)
    rates = []
    for _ in range(EPOCHS * STEPS):
        rates.append(optimizer.param_groups[-1]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return rates


def test_constant_rate_with_and_without_warm_up():
    assert _rates() == [LR] * EPOCHS * STEPS
    warm = _rates(warmup_epochs=2)
    assert warm[0] == pytest.approx(LR * 0.01)
    assert all(a < b for a, b in zip(warm[:8], warm[1:9], strict=True))  # linear ramp over 2 epochs
    assert warm[8:] == pytest.approx([LR] * (EPOCHS - 2) * STEPS)


def test_cosine_after_warm_up_anneals_to_zero():
    rates = _rates(scheduler="cosine", warmup_epochs=1)
    assert rates[0] == pytest.approx(LR * 0.01) and rates[STEPS] == pytest.approx(LR)
    assert all(a > b for a, b in zip(rates[STEPS:-1], rates[STEPS + 1:], strict=True))
    assert rates[-1] < 0.01 * LR


def test_step_multiplies_by_gamma_every_step_size_epochs():
    rates = _rates(scheduler="step", step_size=2, gamma=0.5)
    per_epoch = [rates[e * STEPS] for e in range(EPOCHS)]
    assert per_epoch == pytest.approx([LR, LR, LR / 2, LR / 2, LR / 4])
    default = _rates(scheduler="step")  # a third of the epochs (1 here), gamma 0.1
    assert default[STEPS] == pytest.approx(LR * 0.1)


def test_onecycle_peaks_at_the_learning_rate():
    rates = _rates(scheduler="onecycle")
    assert rates[0] == pytest.approx(LR / 25)
    assert max(rates) == pytest.approx(LR, rel=0.05) and rates[-1] < LR / 100


def test_optimizers_get_their_settings():
    model = A.build_model("resnet18", 3)
    rates = {n: 0.1 for n in A.group_names("resnet18")}
    sgd = build_optimizer(model, "resnet18", _spec(optimizer="sgd", momentum=0.8, nesterov=True, weight_decay=0.01),
                          rates)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.8 and sgd.defaults["weight_decay"] == 0.01
    adamw = build_optimizer(model, "resnet18", _spec(optimizer="adamw", weight_decay=0.05), rates)
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["weight_decay"] == 0.05
    assert [g["name"] for g in adamw.param_groups] == A.group_names("resnet18")
    assert sum(len(g["params"]) for g in adamw.param_groups) == len(list(model.parameters()))


def test_augment_presets_draw_per_image():
    batch = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    assert build_augment("none", 32) is None
    for preset in ("light", "strong"):
        out = build_augment(preset, 32)(batch)
        assert out.shape == batch.shape and out.dtype == torch.uint8
        assert not torch.equal(out, batch)
    torch.manual_seed(0)
    same = build_augment("light", 32)(batch[:1].repeat(8, 1, 1, 1))
    assert len({tuple(img.flatten()[:64].tolist()) for img in same}) > 1  # not one crop for the whole batch


def test_precision_choice():
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16 and autocast_dtype("fp16", cpu) is torch.float16
    assert autocast_dtype("auto", cpu) is (torch.bfloat16 if cpu_supports_bf16() else None)
    with pytest.raises(ValueError, match="precision"):
        autocast_dtype("fp8", cpu)
    device = engine_device()
    if device.type == "cuda":  # a GPU: bf16 where it is native (Ampere on), else fp16 with a GradScaler
        native = torch.cuda.get_device_capability(device)[0] >= 8
        assert autocast_dtype("auto", device) is (torch.bfloat16 if native else torch.float16)
        assert autocast_dtype("fp32", device) is None and autocast_dtype("fp16", device) is torch.float16


def _strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


# Everything that draws random numbers or changes the schedule at once, on a quick policy.
BUSY = {"base_model": {"arch": "mobilenet_v3_small", "weights": "none"},
        "freeze": {"policy": "until", "until": "stage3"}, "head": {"dropout": 0.3},
        "hyperparameters": {"epochs": 3, "optimizer": "sgd", "nesterov": True, "learning_rate": 0.05,
                            "weight_decay": 1e-4, "scheduler": "cosine", "warmup_epochs": 1, "label_smoothing": 0.1,
                            "grad_clip": 1.0, "augment": "strong"}}


def test_deterministic_mode_repeats_every_number(squares, make_spec, tmp_path):
    archive, manifest, _ = squares
    runs = []
    for i in range(2):
        logger = RecordingLogger()
        result = run_training(spec=make_spec(**BUSY), archive_path=archive, manifest=manifest, weights_path=None,
                              out_dir=tmp_path / str(i), logger=logger)
        runs.append((_strip(logger.epochs), result.metrics, result.best_epoch))
    assert_same_numbers(runs[0], runs[1])
    rates = [row["learning_rate"] for row in runs[0][0]]
    assert rates[0] == pytest.approx(0.05) and rates[1] < rates[0] and rates[2] < 1e-6  # cosine after warm-up


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_other_precisions_train(squares, make_spec, tmp_path, precision):
    archive, manifest, _ = squares
    logger = RecordingLogger()
    spec = make_spec(base_model={"arch": "mobilenet_v3_small", "weights": "none"},
                     freeze={"policy": "until", "until": "stage4"},
                     hyperparameters={"epochs": 1, "precision": precision})
    run_training(spec=spec, archive_path=archive, manifest=manifest, weights_path=None, out_dir=tmp_path,
                 logger=logger)
    built = next(data for message, data in logger.events if message == "model built")
    assert built["precision"] == {"fp32": "float32", "fp16": "float16"}[precision]
    assert built["device"] == str(engine_device())
    assert logger.epochs[0]["train_loss"] == logger.epochs[0]["train_loss"]  # not NaN


def test_early_stopping_stops_and_restores_the_best_epoch(squares, make_spec, tmp_path):
    archive, manifest, _ = squares
    logger = RecordingLogger()
    # No accuracy can improve on epoch 1's by more than 1.0, so the run stops after `patience` more epochs.
    spec = make_spec(base_model={"arch": "mobilenet_v3_small", "weights": "none"}, freeze={"policy": "until",
                                                                                          "until": "stage5"},
                     hyperparameters={"epochs": 6, "early_stopping": {"patience": 2, "min_delta": 1.0,
                                                                      "monitor": "val_accuracy"}})
    result = run_training(spec=spec, archive_path=archive, manifest=manifest, weights_path=None, out_dir=tmp_path,
                          logger=logger)
    assert [m["epoch"] for m in logger.epochs] == [1, 2, 3]
    assert ("early stopping", {"epoch": 3, "best_epoch": 1, "monitor": "val_accuracy",
                               "best": logger.epochs[0]["val_accuracy"]}) in logger.events
    assert result.best_epoch == 1 and result.metrics["val_accuracy"] == logger.epochs[0]["val_accuracy"]


def test_best_epoch_tracking_by_loss_and_accuracy(make_spec):
    spec = make_spec(hyperparameters={"early_stopping": {"patience": 2, "min_delta": 0.1, "monitor": "val_loss"}})
    recipe = Recipe(spec, logger=RecordingLogger())
    recipe.monitor, recipe.min_delta, recipe._state = "val_loss", 0.1, lambda: {}
    recipe.best_epoch, recipe.best_score, recipe.wait, recipe.stopped = 0, None, 0, False
    for epoch, loss in enumerate([1.0, 0.95, 0.85, 0.9, 0.8], start=1):
        recipe._track(epoch, loss, patience=2)
        if recipe.stopped:
            break
    # 0.95 is not 0.1 better than 1.0, 0.85 is; then 0.9 and 0.8 are not 0.1 better than 0.85: stop at epoch 5.
    assert (recipe.best_epoch, recipe.best_score, epoch, recipe.stopped) == (3, 0.85, 5, True)
