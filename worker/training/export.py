"""ONNX export with a dynamic batch axis, checked by onnxruntime against torch on a sample batch."""

import copy
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

OPSET = 17


def export_onnx(model: nn.Module, config: dict, dst: Path, *, batch: int = 2) -> dict:
    """Write dst and return {"max_abs_diff", "seconds", "opset"}; raises if onnxruntime disagrees beyond 1e-3."""
    import onnxruntime as ort

    started = time.perf_counter()
    crop = int(config["preprocessing"]["crop"])
    # A CPU copy in fp32 and eval mode: the caller's model stays as it was, wherever it lives.
    model = copy.deepcopy(model).to("cpu", torch.float32, memory_format=torch.contiguous_format).eval()
    sample = torch.randn(batch, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    tmp = dst.with_suffix(".onnx.tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation on every call
        # dynamo=False: the TorchScript-based exporter takes well under the dynamo one's seconds here.
        torch.onnx.export(model, (sample,), str(tmp), dynamo=False, opset_version=OPSET, input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        expected = model(sample).numpy()
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    probe = np.concatenate([sample.numpy(), sample.numpy()[:1]])  # another batch size than exported with
    got = session.run(["logits"], {"images": probe})[0]
    diff = float(max(np.abs(got[:batch] - expected).max(), np.abs(got[batch:] - expected[:1]).max()))
    # Relative to the logits' scale: float32 rounding of large logits (an untrained, random network) differs by
    # more than any fixed absolute bound, while a real export bug differs by orders of magnitude more.
    scale = max(1.0, float(np.abs(expected).max()))
    if not diff / scale < 1e-4:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"onnxruntime output differs from torch by {diff:.3g} (logit scale {scale:.3g})")
    tmp.replace(dst)
    return {"max_abs_diff": diff, "seconds": round(time.perf_counter() - started, 3), "opset": OPSET}
