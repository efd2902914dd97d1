"""Evaluation: top-5 accuracy with more than 5 classes; without a test split, final metrics on val, labelled val."""

import numpy as np

from tests.worker.conftest import COLOURS, RecordingLogger, square
from worker.training.recipe import run_training


def test_top5_per_epoch_and_final_metrics_on_val(make_dataset, make_spec, tmp_path):
    rng = np.random.default_rng(1)
    names = [f"c{i}" for i in range(len(COLOURS))]  # 7 classes, no test split
    samples = [(square(label, rng), label, split) for split, n in (("train", 4), ("val", 2))
               for label in range(len(names)) for _ in range(n)]
    archive, manifest = make_dataset(samples, names, name="seven.zip")
    logger = RecordingLogger()
    spec = make_spec(base_model={"arch": "mobilenet_v3_small", "weights": "none"}, freeze={"policy": "head_only"},
                     hyperparameters={"epochs": 2, "learning_rate": 0.01})
    result = run_training(spec=spec, archive_path=archive, manifest=manifest, weights_path=None, out_dir=tmp_path,
                          logger=logger)
    assert all(0 <= m["val_top5_accuracy"] <= 1 and m["val_top5_accuracy"] >= m["val_accuracy"]
               for m in logger.epochs)
    metrics = result.metrics
    assert metrics["evaluated_on"] == "val" and "test_accuracy" not in metrics  # never called test
    assert set(metrics) == {"evaluated_on", "val_accuracy", "per_class", "confusion_matrix", "top5_accuracy"}
    assert set(metrics["per_class"]) == set(names) and len(metrics["confusion_matrix"]) == 7
    assert sum(map(sum, metrics["confusion_matrix"])) == 14
    assert metrics["top5_accuracy"] >= metrics["val_accuracy"]
