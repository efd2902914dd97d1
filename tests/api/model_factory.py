"""Models made without training: rows and blobs written directly, and a tiny real ONNX classifier (no torch)."""

import secrets
from typing import Any

import numpy as np

PREP = {"resize": 8, "crop": 8, "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
        "rgb": True, "exif_transpose": True}


def colour_onnx(crop: int = 8, classes: int = 3) -> bytes:
    """An ONNX classifier images[N,3,crop,crop] → logits[N,classes]: the mean of channel i is class i's logit."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.zeros((3, classes), dtype=np.float32)
    weight[np.arange(min(3, classes)), np.arange(min(3, classes))] = 4.0
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Gemm", ["flat", "w", "b"], ["logits"])],
        "colour",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, crop, crop])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        initializer=[numpy_helper.from_array(weight, "w"),
                     numpy_helper.from_array(np.zeros(classes, dtype=np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def make_model(tenant: str, *, classes: tuple[str, ...] = ("red", "green", "blue"), onnx: bytes | None = None,
               safetensors: bytes | None = None, preprocessing: dict[str, Any] | None = None) -> str:
    """A model row of the tenant with its artifacts (safetensors always, onnx when given); returns its id."""
    from app.db import get_sessionmaker
    from app.models import Artifact, Model
    from app.storage import get_storage
    from core.ids import new_id

    model_id, job_id = new_id("model"), new_id("job")
    prep = PREP if preprocessing is None else preprocessing
    files = {"safetensors": safetensors or secrets.token_bytes(4096), "config": b"{}"}
    if onnx is not None:
        files["onnx"] = onnx
    with get_sessionmaker()() as s:
        s.add(Model(id=model_id, tenant=tenant, job_id=job_id, dataset_id=new_id("ds"), arch="resnet18",
                    classes=list(classes), metrics={}, preprocessing=prep, lineage={},
                    config={"classes": list(classes), "preprocessing": prep}))
        for fmt, data in files.items():
            key = f"jobs/{job_id}/a1/{fmt}"
            size, sha = get_storage().put_bytes(key, data)
            s.add(Artifact(id=new_id("art"), job_id=job_id, model_id=model_id, format=fmt, bytes=size, sha256=sha,
                           blob_key=key))
        s.commit()
    return model_id

