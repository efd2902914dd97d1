"""The embedded default end to end: one `taas serve` (SQLite, filesystem broker), as a user runs it."""

import httpx

from tests.factories import dataset_members, write_zip
from tests.procs import embedded_serve, poll


def test_taas_serve_from_upload_to_download(tmp_path):
    with embedded_serve(tmp_path) as (url, data, serve):
        key_file = data / "dev-key"
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        key = key_file.read_text().strip()
        assert key in serve.tail(20000)  # printed once on first start
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        path = write_zip(tmp_path / "colours.zip", dataset_members(classes=2, per_class=10, size=16))
        with open(path, "rb") as f:
            ds = http.post("/v1/datasets", files={"file": ("colours.zip", f)}).json()
        poll(lambda: http.get(f"/v1/datasets/{ds['id']}").json()["status"] == "ready", 60, "dataset ready")
        spec = {"dataset_id": ds["id"], "base_model": {"arch": "resnet18", "weights": "none"},
                "freeze": {"policy": "none"}, "hyperparameters": {"epochs": 2, "batch_size": 8, "image_size": 32}}
        job_id = http.post("/v1/jobs", json=spec).json()["id"]
        job = poll(lambda: (j := http.get(f"/v1/jobs/{job_id}").json())["status"] in ("succeeded", "failed") and j,
                   240, "job to finish", interval=0.5)
        assert job["status"] == "succeeded", (job, serve.tail())
        assert len(http.get(f"/v1/jobs/{job_id}/metrics").json()["data"]) == 2
        dl = http.get(f"/v1/models/{job['model_id']}/artifacts/safetensors")
        assert dl.status_code == 200 and len(dl.content) > 1_000_000
        assert (data / "taas.db").exists() and (data / "broker").is_dir()
