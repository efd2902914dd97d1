"""Parity: the API's onnxruntime predictions equal the torch model's on the same images (real worker, real job)."""

import io
import random

from PIL import Image

from tests.factories import COLOURS, dataset_members, image_bytes, write_zip
from tests.procs import poll


def probe_images() -> list[tuple[str, bytes]]:
    """Images unlike the training set's: other sizes and aspect ratios (so resizing and cropping matter),
    JPEG and PNG, an EXIF rotation, RGBA and grayscale."""
    rng = random.Random(99)
    out = [(f"{c}.png", image_bytes(COLOURS[c], 16 + 7 * i, rng)) for i, c in enumerate(("red", "green", "blue"))]

    def encode(image: Image.Image, fmt: str, **kw) -> bytes:  # noqa: ANN003
        buf = io.BytesIO()
        image.save(buf, format=fmt, **kw)
        return buf.getvalue()

    wide = Image.open(io.BytesIO(image_bytes(COLOURS["red"], 48, rng))).resize((61, 29))
    exif = Image.Exif()
    exif[0x0112] = 6
    out += [("wide.jpg", encode(wide, "JPEG", quality=90)), ("rotated.jpg", encode(wide, "JPEG", exif=exif)),
            ("alpha.png", encode(Image.new("RGBA", (23, 40), (30, 200, 40, 90)), "PNG")),
            ("grey.png", encode(Image.new("L", (33, 33), 128), "PNG"))]
    return out


def test_onnx_predictions_match_the_torch_model(stack, tmp_path):
    from worker.training.artifact import load_model, predict

    http = stack.client()
    path = write_zip(tmp_path / "colours.zip", dataset_members(classes=3, per_class=8, size=16, seed=5))
    with open(path, "rb") as f:
        ds = http.post("/v1/datasets", files={"file": ("colours.zip", f)}).json()
    poll(lambda: http.get(f"/v1/datasets/{ds['id']}").json()["status"] == "ready", 60, "dataset ready")
    # Pretrained Lite0 with its head trained: cheap (the frozen backbone's features are computed once), and logits
    # of a sane size. (A randomly initialised resnet18 gives logits in the hundreds, whose float32 rounding
    # differences fail export_onnx's absolute 1e-3 check, so no ONNX artifact is made for it.)
    spec = {"dataset_id": ds["id"], "base_model": {"arch": "efficientnet_lite0", "weights": "imagenet"},
            "freeze": {"policy": "head_only"},
            "hyperparameters": {"epochs": 2, "batch_size": 8, "learning_rate": 0.01, "image_size": 32}}
    resp = http.post("/v1/jobs", json=spec)
    assert resp.status_code == 201, resp.text
    job_id = resp.json()["id"]
    job = poll(lambda: (j := http.get(f"/v1/jobs/{job_id}").json())["status"] in ("succeeded", "failed",
                                                                                   "cancelled") and j,
               300, "job to finish")
    assert job["status"] == "succeeded", (job, stack.worker.tail())
    model_id = job["model_id"]
    # The export runs after the job has succeeded; a failed one is only an event.
    def exported() -> dict | None:
        failed = [e["message"] for e in http.get(f"/v1/jobs/{job_id}/events?limit=1000").json()["data"]
                  if "ONNX export failed" in (e["message"] or "")]
        assert not failed, failed
        m = http.get(f"/v1/models/{model_id}").json()
        return m if any(a["format"] == "onnx" for a in m["artifacts"]) else None

    model = poll(exported, 120, "the ONNX artifact")

    images = probe_images()
    got = http.post(f"/v1/models/{model_id}/predict?top_k=3",
                    files=[("files", (name, data, "application/octet-stream")) for name, data in images])
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["onnx_sha256"] == next(a["sha256"] for a in model["artifacts"] if a["format"] == "onnx")
    assert [d["file"] for d in body["data"]] == [name for name, _ in images]

    for fmt, name in (("safetensors", "model.safetensors"), ("config", "config.json")):
        (tmp_path / name).write_bytes(http.get(f"/v1/models/{model_id}/artifacts/{fmt}").content)
    net, config = load_model((tmp_path / "model.safetensors", tmp_path / "config.json"))
    assert config["preprocessing"] == model["preprocessing"]
    expected = predict(net, config, [Image.open(io.BytesIO(data)) for _, data in images], top_k=3)

    worst = 0.0
    for served, (name, _), torch_top in zip(body["data"], images, expected, strict=True):
        served_probs = {p["label"]: p["probability"] for p in served["predictions"]}
        torch_probs = dict(torch_top)
        assert served_probs.keys() == torch_probs.keys(), name
        worst = max(worst, *(abs(served_probs[k] - torch_probs[k]) for k in torch_probs))
    print(f"max |p_onnx - p_torch| over {len(images)} images: {worst:.2e}")
    assert worst < 1e-4, worst
