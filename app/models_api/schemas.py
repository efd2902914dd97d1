"""Model schemas."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.models import Artifact, Model
from app.schemas import Out, Stamp

_PREP = {"resize": 224, "crop": 224, "interpolation": "bicubic", "mean": [0.485, 0.456, 0.406],
         "std": [0.229, 0.224, 0.225], "rgb": True, "exif_transpose": True}
MODEL_EXAMPLE: dict[str, Any] = {
    "id": "model_01jdr2k7q9x4m3v8t6b1n0c5ze", "job_id": "job_01jdr1y3h5s8p2w7d4f6g9k0m1",
    "dataset_id": "ds_01jdr1x8b2n4m6q8s0t2w4y6a8", "arch": "efficientnet_lite0", "classes": ["cat", "dog"],
    "metrics": {"val_accuracy": 0.94, "test_accuracy": 0.93, "per_class": {"cat": {"precision": 0.95,
                "recall": 0.92}, "dog": {"precision": 0.92, "recall": 0.95}},
                "confusion_matrix": [[46, 4], [3, 47]], "evaluated_on": "test"},
    "preprocessing": _PREP,
    "lineage": {"dataset_sha256": "9f2c" + "0" * 60, "base_weights_sha256": "41ab" + "0" * 60,
                "spec": {"base_model": {"arch": "efficientnet_lite0", "weights": "imagenet"}},
                "code_version": "0.1.0"},
    "config": {"format_version": 1, "arch": "efficientnet_lite0", "num_classes": 2, "classes": ["cat", "dog"],
               "dropout": 0.0, "preprocessing": _PREP},
    "artifacts": [{"format": "config", "bytes": 1024, "sha256": "5d1e" + "0" * 60, "meta": None},
                  {"format": "onnx", "bytes": 13_400_000, "sha256": "c0de" + "0" * 60,
                   "meta": {"max_abs_diff": 2.4e-6, "seconds": 1.8, "opset": 17}},
                  {"format": "safetensors", "bytes": 13_500_000, "sha256": "e3b7" + "0" * 60, "meta": None}],
    "created_at": "2026-11-28T09:10:41.000000Z",
}


class ArtifactRead(BaseModel):
    format: str
    bytes: int
    sha256: str
    meta: dict[str, Any] | None = None


class ModelRead(Out):
    model_config = ConfigDict(json_schema_extra={"examples": [MODEL_EXAMPLE]})

    id: str
    job_id: str
    dataset_id: str
    arch: str
    classes: list[str]
    metrics: dict[str, Any]
    preprocessing: dict[str, Any]
    lineage: dict[str, Any]
    config: dict[str, Any]
    artifacts: list[ArtifactRead]
    created_at: Stamp

    @classmethod
    def of(cls, m: Model, artifacts: list[Artifact]) -> "ModelRead":
        return cls(id=m.id, job_id=m.job_id, dataset_id=m.dataset_id, arch=m.arch, classes=m.classes,
                   metrics=m.metrics, preprocessing=m.preprocessing, lineage=m.lineage, config=m.config,
                   artifacts=[ArtifactRead(format=a.format, bytes=a.bytes, sha256=a.sha256, meta=a.meta)
                              for a in artifacts],
                   created_at=m.created_at)


class LabelProbability(BaseModel):
    label: str
    probability: float


class ImagePrediction(BaseModel):
    file: str = Field(description="the uploaded file's name (files[i] when it had none)")
    predictions: list[LabelProbability] = Field(description="the top k, most probable first")


class PredictRead(BaseModel):
    """Top-k labels per image, in upload order."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model_id": MODEL_EXAMPLE["id"], "onnx_sha256": MODEL_EXAMPLE["artifacts"][1]["sha256"],
        "data": [{"file": "kitchen.jpg", "predictions": [{"label": "cat", "probability": 0.973},
                                                          {"label": "dog", "probability": 0.027}]}]}]})

    model_id: str
    onnx_sha256: str = Field(description="the ONNX artifact that answered")
    data: list[ImagePrediction]
