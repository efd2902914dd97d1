"""The predict use-case: find the model, stream in the images under the caps, run them in the bounded pool."""

import asyncio
from collections.abc import Callable

import anyio
from starlette.requests import Request

from app.config import get_settings
from app.db import get_sessionmaker
from app.models_api.schemas import ImagePrediction, LabelProbability, PredictRead
from app.serving import predict as serving
from app.serving.runtime import get_runtime
from app.serving.upload import receive_images


async def predict(request: Request, *, find: Callable[..., serving.Target], top_k: int) -> PredictRead:
    """Top-k labels per uploaded image; `find(session=...)` resolves the model (404/409) before the body is read."""

    def lookup() -> serving.Target:
        with get_sessionmaker()() as session:
            return find(session=session)

    target = await anyio.to_thread.run_sync(lookup)
    s = get_settings()
    uploads = await receive_images(request, max_images=s.predict_max_images, max_bytes=s.predict_max_bytes)
    names = [u.name for u in uploads]
    future = get_runtime().submit(serving.run, target, uploads, top_k=top_k, max_pixels=s.max_image_pixels)
    results = await asyncio.wrap_future(future)
    return PredictRead(model_id=target.model_id, onnx_sha256=target.onnx_sha256, data=[
        ImagePrediction(file=name, predictions=[LabelProbability(label=lab, probability=p) for lab, p in top])
        for name, top in zip(names, results, strict=True)])
