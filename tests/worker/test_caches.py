"""Work done once: backbone features and decoded images cached across jobs, a size-capped cache, warm weights."""

import os

import pytest
import torch

from tests.worker.conftest import RecordingLogger, assert_same_numbers
from worker.training import base_weights, warm
from worker.training.recipe import run_training
from worker.training.tensor_cache import TensorCache, cache_key

ARCH = "mobilenet_v3_small"
DATASET_SHA = "d" * 64
TIMING = {"images_per_second", "seconds"}


def _job(squares, make_spec, pretrained, tmp_path, name: str, *, lr: float = 0.01, **sections):
    archive, manifest, _ = squares
    weights, sha = pretrained(ARCH)
    logger = RecordingLogger()
    hyperparameters = {"epochs": 2, "learning_rate": lr, **sections.pop("hyperparameters", {})}
    spec = make_spec(base_model={"arch": ARCH, "weights": "imagenet"}, hyperparameters=hyperparameters, **sections)
    result = run_training(spec=spec, archive_path=archive, manifest=manifest, weights_path=weights,
                          out_dir=tmp_path / name, logger=logger, dataset_sha256=DATASET_SHA, weights_sha256=sha,
                          feature_cache_dir=tmp_path / "features", image_cache_dir=tmp_path / "images")
    return result, logger


def _messages(logger):
    return [message for message, _ in logger.events]


def test_a_second_job_on_the_same_data_reuses_the_backbone_features(squares, make_spec, pretrained, tmp_path):
    first, first_log = _job(squares, make_spec, pretrained, tmp_path, "a", freeze={"policy": "head_only"})
    assert "backbone features cached" in _messages(first_log) and "dataset decoded" in _messages(first_log)
    again, again_log = _job(squares, make_spec, pretrained, tmp_path, "b", freeze={"policy": "head_only"})
    assert "backbone features loaded from cache" in _messages(again_log)
    assert "dataset decoded" not in _messages(again_log)  # not even the images are needed
    strip = [{k: v for k, v in m.items() if k not in TIMING} for m in first_log.epochs]
    assert_same_numbers(strip, [{k: v for k, v in m.items() if k not in TIMING} for m in again_log.epochs])
    assert_same_numbers(again.metrics, first.metrics)
    # Another learning rate (a sweep) reuses them too; other preprocessing does not.
    _, sweep = _job(squares, make_spec, pretrained, tmp_path, "c", lr=0.1, freeze={"policy": "head_only"})
    assert "backbone features loaded from cache" in _messages(sweep)
    _, other = _job(squares, make_spec, pretrained, tmp_path, "d", freeze={"policy": "head_only"},
                    hyperparameters={"image_size": 24})
    assert "backbone features cached" in _messages(other)


def test_random_init_features_are_shared_by_seed(squares, make_spec, tmp_path):
    archive, manifest, _ = squares

    def job(name: str, seed: int) -> list[str]:
        logger = RecordingLogger()
        spec = make_spec(base_model={"arch": ARCH, "weights": "none"}, freeze={"policy": "head_only"},
                         hyperparameters={"epochs": 1, "seed": seed})
        run_training(spec=spec, archive_path=archive, manifest=manifest, weights_path=None, out_dir=tmp_path / name,
                     logger=logger, dataset_sha256=DATASET_SHA, feature_cache_dir=tmp_path / "features")
        return _messages(logger)

    assert "backbone features cached" in job("a", seed=1)
    assert "backbone features loaded from cache" in job("b", seed=1)  # the same seed draws the same backbone
    assert "backbone features cached" in job("c", seed=2)


def test_decoded_images_are_cached_per_dataset_and_preprocessing(squares, make_spec, pretrained, tmp_path):
    sections = {"freeze": {"policy": "until", "until": "stage5"}, "hyperparameters": {"augment": "light"}}
    _, first = _job(squares, make_spec, pretrained, tmp_path, "a", **sections)
    _, again = _job(squares, make_spec, pretrained, tmp_path, "b", **sections)
    sources = [data["source"] for log in (first, again) for message, data in log.events if message == "dataset decoded"]
    assert sources == ["archive", "image cache"]


def test_tensor_cache_keeps_to_its_cap_least_recently_used_first(tmp_path):
    cache = TensorCache(tmp_path, max_bytes=2500)
    blob = {"x": torch.zeros(256)}  # 1 KiB of data plus a small header
    for key in ("a", "b"):
        cache.put(key, blob)
    past = os.stat(tmp_path / "a.safetensors").st_mtime - 10
    os.utime(tmp_path / "b.safetensors", (past, past))  # b is now the older one ...
    assert cache.get("b") is not None  # ... until it is used
    cache.put("c", blob)
    assert cache.get("a") is None and cache.get("b") is not None and cache.get("c") is not None
    cache.put("huge", {"x": torch.zeros(10_000)})  # over the cap on its own: never stored
    assert cache.get("huge") is None
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    assert cache.get("bad") is None and not (tmp_path / "bad.safetensors").exists()
    assert cache_key(a=1, b=[1, 2]) == cache_key(b=[1, 2], a=1) != cache_key(a=2, b=[1, 2])


def test_warm_worker_holds_recent_base_weights(pretrained, monkeypatch):
    warm.warm_up()
    base_weights.clear()
    path, sha = pretrained(ARCH)
    first = base_weights.load_base_weights(path, sha)
    assert base_weights.load_base_weights(path, sha) is first  # parsed once
    assert base_weights.load_base_weights(path) is not first  # without a sha256 nothing is shared
    monkeypatch.setattr(base_weights, "MAX_CACHED_WEIGHTS", 2)
    for other in ("1" * 64, "2" * 64):
        base_weights.load_base_weights(path, other)
    assert base_weights.load_base_weights(path, sha) is not first  # evicted, least recently used first
    base_weights.clear()


@pytest.mark.parametrize("policy", ["head_only", "until"])
def test_cancelling_while_the_prefix_is_computed(squares, make_spec, tmp_path, policy):
    from worker.training.recipe import TrainingCancelled

    archive, manifest, _ = squares
    calls = []
    spec = make_spec(base_model={"arch": ARCH, "weights": "none"},
                     freeze={"policy": policy, "until": "stage2" if policy == "until" else None})
    with pytest.raises(TrainingCancelled):
        run_training(spec=spec, archive_path=archive, manifest=manifest, weights_path=None, out_dir=tmp_path,
                     logger=RecordingLogger(), should_stop=lambda: calls.append(1) or len(calls) > 2)
