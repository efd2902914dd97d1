"""The embedded default survives a crash: SIGKILL the whole `taas serve` group mid-job, start it again."""


import httpx

from tests.conftest import free_port
from tests.factories import dataset_members, write_zip
from tests.faults.conftest import FAST, FAULT_SEED
from tests.procs import Proc, embedded_env, poll, taas, wait_healthy


def test_sigkill_taas_serve_mid_job_then_restart_completes_the_job(tmp_path):
    port, data = free_port(), tmp_path / "data"
    env = embedded_env(data, port, **FAST)
    # The worker kills its own process group after epoch 2: that group is the whole `taas serve`.
    crash = {**env, "TAAS_TESTING": "1", "TAAS_FAULT_SEED": str(FAULT_SEED), "TAAS_FAULT_EPOCH": "2",
             "TAAS_FAULT_ACTION": "kill_group"}
    url = f"http://127.0.0.1:{port}"
    first = Proc(taas("serve"), crash, tmp_path / "serve1.log")
    second = None
    try:
        wait_healthy(url, first, timeout=120)
        http = httpx.Client(base_url=url, timeout=30,
                            headers={"Authorization": f"Bearer {(data / 'dev-key').read_text().strip()}"})
        path = write_zip(tmp_path / "d.zip", dataset_members(classes=2, per_class=6, size=8))
        with open(path, "rb") as f:
            ds = http.post("/v1/datasets", files={"file": ("d.zip", f)}).json()
        poll(lambda: http.get(f"/v1/datasets/{ds['id']}").json()["status"] == "ready", 60, "dataset ready")
        spec = {"dataset_id": ds["id"], "base_model": {"arch": "resnet18", "weights": "none"},
                "freeze": {"policy": "none"}, "hyperparameters": {"epochs": 4, "image_size": 16, "seed": FAULT_SEED}}
        job_id = http.post("/v1/jobs", json=spec).json()["id"]
        poll(lambda: not first.alive(), 120, "taas serve to be killed")
        second = Proc(taas("serve"), env, tmp_path / "serve2.log")
        wait_healthy(url, second, timeout=120)

        def finished() -> dict | None:
            job = http.get(f"/v1/jobs/{job_id}").json()
            return job if job["status"] in ("succeeded", "failed", "cancelled") else None

        job = poll(finished, 180, "the job to finish after the restart", interval=0.5)
        assert job["status"] == "succeeded", (job, second.tail())
        assert [m["epoch"] for m in http.get(f"/v1/jobs/{job_id}/metrics").json()["data"]] == [1, 2, 3, 4]
        assert job["attempt"] == 2
    finally:
        first.stop()
        if second:
            second.stop()
