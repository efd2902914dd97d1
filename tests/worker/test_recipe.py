"""The recipe end to end on a tiny separable dataset: logging, learning, artifacts, cancelling, determinism."""

import io
import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from core.spec import SpecTooLarge
from tests.worker.conftest import CLASSES, RecordingLogger, assert_same_numbers, on_gpu, write_archive
from worker.training import architectures as A
from worker.training.artifact import load_model, predict
from worker.training.data import Preprocessing, load_splits
from worker.training.loop import classification_metrics
from worker.training.recipe import Recipe, TrainingCancelled, run_training

EPOCH_KEYS = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate",
              "images_per_second", "seconds"}


@pytest.fixture(scope="module")
def trained(squares, make_spec, tmp_path_factory):
    archive, manifest, _ = squares
    logger = RecordingLogger()
    result = run_training(spec=make_spec(), archive_path=archive, manifest=manifest, weights_path=None,
                          out_dir=tmp_path_factory.mktemp("model"), logger=logger)
    return result, logger


def test_every_epoch_is_logged_and_the_model_learns(trained):
    result, logger = trained
    assert [m["epoch"] for m in logger.epochs] == [1, 2, 3]
    assert all(set(m) == EPOCH_KEYS for m in logger.epochs)
    assert result.metrics["evaluated_on"] == "test"
    assert result.metrics["val_accuracy"] == max(m["val_accuracy"] for m in logger.epochs)
    assert logger.epochs[result.best_epoch - 1]["val_accuracy"] == result.metrics["val_accuracy"]
    print(f"val accuracy per epoch {[round(m['val_accuracy'], 3) for m in logger.epochs]}, "
          f"test {result.metrics['test_accuracy']:.3f}")
    assert result.metrics["val_accuracy"] > 1 / 3 + 0.2  # well above chance
    assert set(result.metrics["per_class"]) == set(CLASSES)
    assert sum(map(sum, result.metrics["confusion_matrix"])) == 18


def test_artifact_rebuilds_and_predicts_like_the_trained_model(trained, squares):
    result, _ = trained
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["classes"] == CLASSES and config["head_keys"] == ["fc.1.weight", "fc.1.bias"]
    assert config["preprocessing"]["crop"] == 32 and config["preprocessing"]["exif_transpose"] is True
    model, config = load_model(result.model_dir)
    ranked = predict(model, config, squares[2], top_k=2)
    assert all(len(r) == 2 and r[0][1] >= r[1][1] for r in ranked)
    # The confusion matrix came from the best weights on the decoded test split; predict must agree.
    confusion = [[0] * 3 for _ in range(3)]
    for true, top in zip([i // 6 for i in range(18)], ranked, strict=True):
        confusion[true][CLASSES.index(top[0][0])] += 1
    assert confusion == result.metrics["confusion_matrix"]


def test_predict_gives_the_in_memory_model_probabilities(squares, make_spec, tmp_path):
    archive, manifest, test_images = squares
    recipe = Recipe(make_spec(hyperparameters={"epochs": 1}), logger=RecordingLogger())
    recipe.setup(archive_path=archive, manifest=manifest, weights_path=None)
    recipe.train()
    recipe.final_metrics()
    images = recipe.data.images()["test"].images.to(recipe.device)
    with torch.no_grad():
        expected = recipe.model.eval()(recipe.prep.normalize(images)).softmax(1).cpu()
    model, config = load_model(recipe.save(tmp_path / "model"))
    got = predict(model, config, test_images, top_k=3)  # on the CPU
    tolerance = 5e-3 if on_gpu() else 1e-5  # a GPU's fp32 convolutions use TF32
    for row, probs in zip(got, expected, strict=True):
        for label, p in row:
            assert p == pytest.approx(probs[CLASSES.index(label)].item(), abs=tolerance)


def test_should_stop_cancels_between_steps(squares, make_spec, tmp_path):
    archive, manifest, _ = squares
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) >= 3

    logger = RecordingLogger()
    with pytest.raises(TrainingCancelled):
        run_training(spec=make_spec(), archive_path=archive, manifest=manifest, weights_path=None,
                     out_dir=tmp_path / "model", logger=logger, should_stop=should_stop)
    assert logger.epochs == [] and not (tmp_path / "model").exists()


def test_same_spec_and_seed_give_identical_metrics(trained, squares, make_spec, tmp_path):
    result, logger = trained
    archive, manifest, _ = squares
    again = RecordingLogger()
    repeat = run_training(spec=make_spec(), archive_path=archive, manifest=manifest, weights_path=None,
                          out_dir=tmp_path / "model", logger=again)
    timing = {"images_per_second", "seconds"}
    assert_same_numbers([{k: v for k, v in m.items() if k not in timing} for m in again.epochs],
                        [{k: v for k, v in m.items() if k not in timing} for m in logger.epochs])
    assert_same_numbers(repeat.metrics, result.metrics)
    assert repeat.best_epoch == result.best_epoch


@pytest.mark.parametrize("sections, match", [
    ({"base_model": {"arch": "vgg11"}}, "unknown arch"),
    ({"freeze": {"policy": "until", "until": "layer9"}}, "freeze.until"),
    ({"freeze": {"policy": "until", "until": "head"}}, "freeze.until"),
    ({"hyperparameters": {"optimizer": "lbfgs"}}, "optimizer"),
    ({"freeze": {"policy": "head_only"}, "regularization": {"kind": "l2sp", "alpha": 0.1}}, "regulariser"),
    ({"hyperparameters": {"num_workers": 2}}, "num_workers"),
])
def test_invalid_specs_are_refused_before_any_work(make_spec, sections, match):
    with pytest.raises(ValueError, match=match):
        Recipe(make_spec(**sections), logger=RecordingLogger())


def test_the_claims_batch_pixel_cap_is_applied_before_any_work(make_spec):
    spec = make_spec(hyperparameters={"batch_size": 64, "image_size": 64})
    Recipe(spec, logger=RecordingLogger(), max_batch_pixels=64 * 64 * 64)
    with pytest.raises(SpecTooLarge, match="over the 262143 limit"):
        Recipe(spec, logger=RecordingLogger(), max_batch_pixels=64 * 64 * 64 - 1)


def test_weights_path_must_match_the_spec(squares, make_spec, tmp_path):
    archive, manifest, _ = squares
    with pytest.raises(ValueError, match="weights"):
        run_training(spec=make_spec(base_model={"weights": "imagenet"}), archive_path=archive, manifest=manifest,
                     weights_path=None, out_dir=tmp_path, logger=RecordingLogger())


def test_tar_archives_exif_orientation_and_grey_images(tmp_path):
    base = Image.new("RGB", (40, 20), (255, 0, 0))
    base.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: displays turned 90° clockwise
    rotated, grey = io.BytesIO(), io.BytesIO()
    base.save(rotated, "PNG", exif=exif)
    Image.new("L", (30, 30), 128).save(grey, "PNG")
    archive = write_archive(tmp_path / "data.tar", {"a/rot.png": rotated.getvalue(), "b/grey.png": grey.getvalue()})
    manifest = {"classes": ["a", "b"], "items": [{"path": "a/rot.png", "label": 0, "split": "train"},
                                                 {"path": "b/grey.png", "label": 1, "split": "val"}]}
    prep = Preprocessing(resize=16, crop=16, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)
    splits = load_splits(archive, manifest, prep)
    image = splits["train"].images[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8
    assert image[0, 0, 8] > 200 and image[2, -1, 8] > 200  # red on top, blue at the bottom once upright
    assert splits["val"].images.shape == (1, 3, 16, 16) and splits["val"].labels.tolist() == [1]
    with pytest.raises(ValueError, match="missing"):
        load_splits(archive, {"classes": ["a"], "items": [{"path": "nope.png", "label": 0, "split": "train"}]},
                    prep)


def test_head_only_trains_the_head_alone(squares, make_spec, tmp_path):
    archive, manifest, _ = squares
    logger = RecordingLogger()
    result = run_training(spec=make_spec(freeze={"policy": "head_only"}, hyperparameters={"epochs": 2}),
                          archive_path=archive, manifest=manifest, weights_path=None, out_dir=tmp_path / "m",
                          logger=logger)
    assert "backbone features cached" in [message for message, _ in logger.events]
    torch.manual_seed(0)  # the recipe seeds before building, so this is the model it started from
    initial = A.build_model("resnet18", 3).state_dict()
    trained = load_file(str(result.model_dir / "model.safetensors"))
    head = set(A.head_keys("resnet18"))
    assert all(torch.equal(trained[k], v) for k, v in initial.items() if k not in head)  # BN stats too
    assert all(not torch.equal(trained[k], initial[k]) for k in head)


def test_classification_metrics_agree_with_scikit_learn():
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    g = torch.Generator().manual_seed(0)
    labels, predicted = torch.randint(0, 4, (200,), generator=g), torch.randint(0, 3, (200,), generator=g)
    report = classification_metrics(predicted, labels, ["a", "b", "c", "d"])  # "d" is never predicted
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=range(4),
                                                                     zero_division=0)
    assert report["confusion_matrix"] == confusion_matrix(labels, predicted, labels=range(4)).tolist()
    for i, name in enumerate("abcd"):
        row = report["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((precision[i], recall[i], f1[i]))
        assert row["support"] == support[i]
    assert report["accuracy"] == pytest.approx((labels == predicted).float().mean().item())
