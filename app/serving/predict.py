"""One prediction: decode and preprocess the images, run the ONNX session, keep the top k per image."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.errors import Conflict, Invalid
from app.serving.preprocess import BadImage, Preprocessing, decode
from app.serving.runtime import get_runtime
from app.serving.upload import Upload


@dataclass(frozen=True)
class Target:
    """What a prediction needs of a model, read from the database before the upload is."""

    model_id: str
    classes: list[str]
    preprocessing: Preprocessing
    onnx_path: Path
    onnx_sha256: str


def run(target: Target, uploads: list[Upload], *, top_k: int, max_pixels: int) -> list[list[tuple[str, float]]]:
    """Top-k (label, probability) per image, most probable first. Blocking: call it in the runtime's pool."""
    images = []
    for up in uploads:
        try:
            with decode(bytes(up.data), max_pixels=max_pixels) as image:
                images.append(target.preprocessing.to_uint8(image))
        except (BadImage, OSError, ValueError) as exc:
            raise Invalid(f"{up.name!r} is not a readable image: {exc}", code="bad_image",
                          details={"file": up.name}) from None
        up.data = bytearray()  # the encoded bytes are no longer needed
    session = get_runtime().sessions.get(target.onnx_sha256, target.onnx_path)
    logits = session.run(None, {session.get_inputs()[0].name: target.preprocessing.normalize(np.stack(images))})[0]
    if logits.ndim != 2 or logits.shape != (len(images), len(target.classes)):
        raise Conflict(f"the ONNX artifact's output {logits.shape} does not fit the model's {len(target.classes)} "
                       "classes", code="onnx_unavailable")
    return top(softmax(logits), target.classes, top_k)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, in float64 so that tiny probabilities keep their digits."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def top(probs: np.ndarray, classes: list[str], k: int) -> list[list[tuple[str, float]]]:
    """The k most probable classes per row, ties broken by class order."""
    k = min(k, len(classes))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(classes[j], float(row[j])) for j in idx] for row, idx in zip(probs, order, strict=True)]
