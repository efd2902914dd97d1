"""Take docs/dashboard.png: a real job's page in the dashboard, rendered by chromium.

Starts `taas serve` on a free port in a temporary data dir (imports EfficientNet-Lite0's ImageNet weights first, as
`make run` does), uploads scikit-learn's digits, fine-tunes Lite0's head for a few epochs, waits for the job to
succeed, then signs in to the dashboard at 1400x1000 and saves the job page, charts and confusion matrix included,
as a full-page PNG. Everything it starts is stopped and the data dir removed at the end.

Usage: .venv/bin/python scripts/screenshot.py [--out docs/dashboard.png] [--epochs 5]   (or `make screenshot`)
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402
from tests.procs import poll  # noqa: E402

CHROMIUM = os.environ.get("TAAS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu",
        "--no-first-run", "--disable-sync", "--hide-scrollbars"]


def wait(fn, timeout: float, what: str):  # noqa: ANN001, ANN201
    """Poll fn until it returns something truthy, or give up at the deadline."""
    return poll(fn, timeout, what, interval=0.5)


def taas(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "client.cli", *args], env=env, cwd=ROOT, check=True)


def train(http: httpx.Client, tmp: Path, epochs: int) -> str:
    """Upload the digits, fine-tune Lite0's head on them; the succeeded job's id."""
    archive = tmp / "digits.zip"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_digits_zip.py"), str(archive)], check=True)
    with archive.open("rb") as f:
        resp = http.post("/v1/datasets", files={"file": ("digits.zip", f)}, data={"name": "digits"})
    resp.raise_for_status()
    ds = resp.json()["id"]
    wait(lambda: http.get(f"/v1/datasets/{ds}").json()["status"] in ("ready", "failed"), 300, "the dataset")
    spec = {"dataset_id": ds, "base_model": {"arch": "efficientnet_lite0", "weights": "imagenet"},
            "freeze": {"policy": "head_only"},
            "hyperparameters": {"epochs": epochs, "image_size": 64, "batch_size": 32, "learning_rate": 0.01}}
    resp = http.post("/v1/jobs", json=spec)
    resp.raise_for_status()
    job_id = resp.json()["id"]
    print(f"training {job_id} ({epochs} epochs)", flush=True)
    job = wait(lambda: (j := http.get(f"/v1/jobs/{job_id}").json())["status"] in ("succeeded", "failed", "cancelled")
               and j, 900, "the job", interval=2)
    if job["status"] != "succeeded":
        raise SystemExit(f"the job ended {job['status']}: {job.get('error')}")
    return job_id


def shoot(url: str, key: str, job_id: str, epochs: int, out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        page.fill("#api-key", key)
        page.click("#sign-in")
        expect(page.locator("#nav")).to_be_visible()
        page.goto(f"{url}/#/jobs/{job_id}")
        for chart in ("#loss-chart", "#accuracy-chart"):
            expect(page.locator(chart)).to_have_attribute("data-points", str(epochs), timeout=60_000)
        expect(page.locator("#confusion-matrix")).to_be_visible(timeout=60_000)
        expect(page.locator("#stream-state")).to_have_attribute("data-state", "ended", timeout=60_000)
        page.mouse.move(0, 0)  # no hover highlight in the picture
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        browser.close()
        if errors:
            raise SystemExit(f"the page reported errors: {errors}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"no chromium at {CHROMIUM}: apt-get install chromium (or set TAAS_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="taas-screenshot-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAAS_")}
        env.update({"TAAS_DATA_DIR": str(tmp / "data"), "TAAS_PORT": str(port), "PYTHONUNBUFFERED": "1",
                    "TAAS_LOG_LEVEL": "WARNING"})
        taas(env, "db", "upgrade")
        taas(env, "weights", "import", "efficientnet_lite0")
        log = (tmp / "serve.log").open("wb")
        serve = subprocess.Popen([sys.executable, "-m", "client.cli", "serve"], env=env, cwd=ROOT, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            def healthy() -> bool:
                if serve.poll() is not None:
                    raise SystemExit(f"taas serve exited: {(tmp / 'serve.log').read_text()[-3000:]}")
                try:
                    return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            wait(healthy, 120, "taas serve")
            key = (tmp / "data" / "dev-key").read_text().strip()
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
                job_id = train(http, tmp, args.epochs)
            shoot(url, key, job_id, args.epochs, args.out)
            print(f"wrote {args.out}")
        finally:
            if serve.poll() is None:
                os.killpg(serve.pid, signal.SIGTERM)
                try:
                    serve.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(serve.pid, signal.SIGKILL)
                    serve.wait()
            log.close()


if __name__ == "__main__":
    main()
