"""The engine's device: TAAS_DEVICE's choice, CPU-only saving, and (on a GPU) a whole job there and its memory back.

The GPU tests run with TAAS_TEST_DEVICE=cuda on a machine with one; elsewhere they are skipped.
"""

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.worker.conftest import RecordingLogger, engine_device
from worker.training.device import DeviceError, release_memory, resolve_device, to_cpu, to_device
from worker.training.recipe import Recipe, run_training


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_auto_is_the_cpu_without_a_gpu(no_gpu, monkeypatch):
    monkeypatch.delenv("TAAS_DEVICE", raising=False)
    assert resolve_device() == torch.device("cpu")  # unset: auto
    for value in ("auto", "AUTO", " cpu ", "", "Cpu"):
        monkeypatch.setenv("TAAS_DEVICE", value)
        assert resolve_device() == torch.device("cpu"), value
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_is_the_gpu_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # resolve_device sets it: undone after the test
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 0)


@pytest.mark.parametrize("value", ["gpu", "cuda:0", "mps", "tpu", "1"])
def test_other_values_are_refused_with_the_variable_named(value):
    with pytest.raises(DeviceError, match=f"TAAS_DEVICE={value!r} is not a device: use one of auto, cpu, cuda"):
        resolve_device(value)


def test_cuda_without_a_gpu_is_refused(no_gpu):
    with pytest.raises(DeviceError, match="TAAS_DEVICE=cuda but torch .* sees no CUDA device"):
        resolve_device("cuda")


def test_a_recipe_with_a_bad_device_fails_before_any_work(make_spec, monkeypatch):
    monkeypatch.setenv("TAAS_DEVICE", "gpu")
    # Not a ValueError: the runner reports those as the spec's fault, and this is the worker's.
    with pytest.raises(DeviceError, match="TAAS_DEVICE"):
        Recipe(make_spec(), logger=RecordingLogger())
    assert not issubclass(DeviceError, ValueError)


def test_tensors_go_to_the_cpu_for_saving_and_stay_put_on_their_device():
    x = torch.arange(6.0, requires_grad=True)
    nest = {"a": x * 2, "b": [x, (x, 3)], "c": "text", "d": None}
    out = to_cpu(nest)
    assert out["c"] == "text" and out["d"] is None and out["b"][1][1] == 3 and isinstance(out["b"][1], tuple)
    assert not out["a"].requires_grad and torch.equal(out["a"], x.detach() * 2)
    assert to_device(x, torch.device("cpu")) is x
    release_memory()  # nothing to release on a CPU, and nothing is set up to find that out


gpu_only = pytest.mark.skipif(engine_device().type != "cuda", reason="a GPU run: TAAS_TEST_DEVICE=cuda")


def _all_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _all_tensors(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _all_tensors(v)


@gpu_only
def test_a_gpu_job_records_its_device_saves_cpu_tensors_and_gives_its_memory_back(squares, make_spec, pretrained,
                                                                                   tmp_path):
    from worker.training.checkpoint import load_checkpoint

    archive, manifest, _ = squares
    weights, sha = pretrained("mobilenet_v3_small")
    # Augmentation, an l2sp anchor (it needs base weights), dropout, a cached prefix: every kind of tensor a job moves.
    spec = make_spec(base_model={"arch": "mobilenet_v3_small", "weights": "imagenet"}, head={"dropout": 0.2},
                     freeze={"policy": "until", "until": "stage3"}, regularization={"kind": "l2sp", "alpha": 0.3},
                     hyperparameters={"epochs": 2, "augment": "light", "precision": "auto"})

    def job(name: str):
        logger, checkpoints = RecordingLogger(), {}
        result = run_training(spec=spec, archive_path=archive, manifest=manifest, weights_path=weights,
                              weights_sha256=sha, out_dir=tmp_path / name, logger=logger,
                              checkpoint_dir=tmp_path / f"ck-{name}",
                              on_checkpoint=lambda epoch, path: checkpoints.update({epoch: load_checkpoint(path)}))
        torch.cuda.synchronize()
        return result, logger, checkpoints

    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    result, logger, checkpoints = job("a")
    after_one = torch.cuda.memory_allocated()
    _, _, _ = job("b")
    after_two = torch.cuda.memory_allocated()
    mib = 2**20
    print(f"allocated: before {before / mib:.1f} MiB, after one job {after_one / mib:.1f}, after two "
          f"{after_two / mib:.1f}; reserved {torch.cuda.memory_reserved() / mib:.1f} MiB")
    assert after_two - after_one < 2 * mib  # nothing a job held stays behind
    # At most the cuBLAS/cuDNN workspaces a first job sets up (CUBLAS_WORKSPACE_CONFIG=:4096:8 for determinism):
    # 65 MiB on an H200.
    assert after_one - before < 128 * mib
    assert torch.cuda.memory_reserved() - torch.cuda.memory_allocated() < 64 * mib  # the cache went back

    built = next(data for message, data in logger.events if message == "model built")
    assert built["device"].startswith("cuda") and built["device_name"] == torch.cuda.get_device_name()
    assert built["precision"] == ("bfloat16" if torch.cuda.get_device_capability()[0] >= 8 else "float16")
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["training"]["device"] == built["device"]
    assert all(t.device.type == "cpu" for c in checkpoints.values() for t in _all_tensors(c))
    assert all(t.device.type == "cpu" and t.is_contiguous()
               for t in load_file(str(result.model_dir / "model.safetensors")).values())
    assert result.metrics["val_accuracy"] > 0


@gpu_only
def test_onnx_export_takes_a_cpu_copy_of_a_gpu_model(squares, make_spec, tmp_path):
    import onnx

    from worker.training.export import export_onnx

    archive, manifest, _ = squares
    recipe = Recipe(make_spec(base_model={"arch": "mobilenet_v3_small", "weights": "none"},
                              freeze={"policy": "head_only"}, hyperparameters={"epochs": 1}),
                    logger=RecordingLogger())
    try:
        recipe.setup(archive_path=archive, manifest=manifest, weights_path=None)
        recipe.train()
        recipe.final_metrics()
        model_dir = recipe.save(tmp_path / "model")
        config = json.loads((model_dir / "config.json").read_text())
        info = export_onnx(recipe.model, config, tmp_path / "model.onnx")
        onnx.checker.check_model(str(tmp_path / "model.onnx"))
        assert info["max_abs_diff"] < 1e-3
        # The GPU model is untouched: still on its device, in channels_last.
        weight = next(p for p in recipe.model.parameters() if p.dim() == 4)
        assert weight.device.type == "cuda" and weight.is_contiguous(memory_format=torch.channels_last)
    finally:
        recipe.cleanup()
