"""Fuzzing over real HTTP: schemathesis (its CLI, in a subprocess) against a running `taas serve`.

The serve is seeded first, through the API: a ready dataset, a webhook (subscribed before the job ends, so its
delivery log has an entry), a job trained by the serve's own worker and its model (with the ONNX export), an
alias to the model and a base model. Their ids are the run's dictionaries for the path parameters (half the
time; see schemathesis.toml), so the cases reach past the 404s; DELETE never removes them (fuzz_hooks.py).

All four phases run (examples, coverage, fuzzing, stateful with the links schemathesis infers) under one fixed
seed and one time budget (max-time). The run fails on any 5xx, or on an answer that does not match the document
(status, content type, headers, body schema), or on a stateful mismatch (a created resource that cannot be read,
a deleted one that still can). Reaching the time budget mid-phase is the plan, not a failure; so are transport
errors while the server stays up (reported as a warning): a flaky run does not block a landing, a defect does.

The in-process run (test_schema.py, through ASGI) stays: it is quicker and reaches the same routes with a
fixed number of examples each; this one is the real stack (uvicorn, the worker, the files, the clock).

Network: the serve and the fuzzer run with tests/security/loopback_only on PYTHONPATH, so neither can resolve or
reach anything but loopback (the fuzzer makes webhooks to arbitrary hosts, which the server would look up and
call). Everything is written under tmp_path."""

import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import tomllib
import warnings
from pathlib import Path

import httpx

from tests.factories import dataset_members, write_zip
from tests.procs import ROOT, Proc, embedded_serve, poll

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "schemathesis.toml"
GUARD = HERE / "loopback_only"
MAX_TIME = tomllib.loads(CONFIG.read_text())["max-time"]
# Past the budget, schemathesis finishes the scenario in flight and writes its reports; this is the hard stop.
GRACE = 90
JOB = {"base_model": {"arch": "mobilenet_v3_small", "weights": "none"}, "freeze": {"policy": "none"},
       "hyperparameters": {"epochs": 1, "batch_size": 8, "image_size": 16}}


def _pythonpath(*first: Path) -> str:
    """PYTHONPATH with these folders ahead of what it already holds."""
    return os.pathsep.join([*map(str, first), *filter(None, [os.environ.get("PYTHONPATH")])])


def _safetensors(path: Path, arch: str) -> Path:
    """A safetensors file with the catalogue's tensor names and shapes for arch, all zeros (F16)."""
    from core import catalog

    header, offset = {}, 0
    for name, shape in catalog.get_arch(arch)["weights"].items():
        size = math.prod(shape) * 2
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    return path


def seed(http: httpx.Client, tmp: Path) -> dict[str, list[str]]:
    """The resources the fuzz run aims at, by dictionary name (see schemathesis.toml)."""
    archive = write_zip(tmp / "colours.zip", dataset_members(classes=2, per_class=6, size=16))
    with open(archive, "rb") as f:
        resp = http.post("/v1/datasets", files={"file": ("colours.zip", f)})
    assert resp.status_code == 201, resp.text
    ds_id = resp.json()["id"]
    poll(lambda: http.get(f"/v1/datasets/{ds_id}").json()["status"] == "ready", 60, "dataset ready")
    hook = http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["job.succeeded"]})
    assert hook.status_code == 201, hook.text
    resp = http.post("/v1/jobs", json={"dataset_id": ds_id, **JOB})
    assert resp.status_code == 201, resp.text
    job_id = resp.json()["id"]
    job = poll(lambda: (j := http.get(f"/v1/jobs/{job_id}").json())["status"] in ("succeeded", "failed") and j,
               180, "the seeded job to finish", interval=0.5)
    assert job["status"] == "succeeded", job
    model_id = job["model_id"]
    # The export runs after the job: predictions need it.
    poll(lambda: any(a["format"] == "onnx" for a in http.get(f"/v1/models/{model_id}").json()["artifacts"]),
         60, "the ONNX export")
    alias = http.put("/v1/aliases/prod", json={"model_id": model_id})
    assert alias.status_code in (200, 201), alias.text
    with open(_safetensors(tmp / "backbone.safetensors", "mobilenet_v3_small"), "rb") as f:
        bm = http.post("/v1/base-models", files={"file": ("backbone.safetensors", f)},
                       data={"arch": "mobilenet_v3_small", "name": "zeros"})
    assert bm.status_code == 201, bm.text
    return {"dataset_id": [ds_id], "job_id": [job_id], "model_id": [model_id], "alias": ["prod"],
            "webhook_id": [hook.json()["id"]], "bm_id": [bm.json()["id"]], "fmt": ["safetensors", "onnx", "config"]}


def prepare(run: Path, seeded: dict[str, list[str]]) -> Path:
    """The run's directory: the config and the seeded dictionaries next to it."""
    (run / "seeded").mkdir(parents=True)
    config = run / "schemathesis.toml"
    shutil.copyfile(CONFIG, config)
    for name, values in seeded.items():
        (run / "seeded" / f"{name}.dict").write_text("".join(json.dumps(v) + "\n" for v in values))
    return config


def fuzz(run: Path, url: str, key: str, keep: list[str]) -> tuple[int | None, dict | None, str]:
    """Run schemathesis; (exit status or None when stopped at the hard cap, the JSON report, the output)."""
    config = run / "schemathesis.toml"
    reports = run / "reports"
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run",
           f"{url}/openapi.json", "-H", f"Authorization: Bearer {key}",
           "--report", "json,junit", "--report-dir", str(reports),
           "--report-json-path", str(reports / "run.json"), "--report-junit-path", str(reports / "junit.xml")]
    env = {**os.environ, "PYTHONPATH": _pythonpath(GUARD, ROOT), "FUZZ_KEEP_IDS": ",".join(keep),
           "PYTHONUNBUFFERED": "1"}
    proc = Proc(cmd, env, run / "schemathesis.log", cwd=run)
    try:
        code: int | None = proc.p.wait(timeout=MAX_TIME + GRACE)
    except subprocess.TimeoutExpired:  # stopped below, and judged on what it reported
        code = None
    finally:
        proc.stop(signal.SIGINT, timeout=15)
    report = reports / "run.json"
    return code, (json.loads(report.read_text()) if report.exists() else None), proc.tail(60_000)


def test_live_fuzz_finds_no_5xx_and_no_schema_mismatch(tmp_path, record_property):
    env = {"PYTHONPATH": _pythonpath(GUARD), "TAAS_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
           # The fuzzer's own jobs (any spec the schema allows, on the seeded dataset) are trained too: one unfinished
           # at a time (then 429), with batches of at most the default 32 images of 224 px (then 422; the server's
           # default allows 8 times that): a full fine-tune of the largest catalogue arch then peaks at about 4.5 GB.
           "TAAS_QUOTA_MAX_ACTIVE_JOBS": "1", "TAAS_MAX_BATCH_PIXELS": str(32 * 224 * 224)}
    with embedded_serve(tmp_path, **env) as (url, data, serve):
        key = (data / "dev-key").read_text().strip()
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        started = time.monotonic()
        seeded = seed(http, tmp_path)
        key_id = http.get("/v1/keys").json()["data"][0]["id"]
        keep = [*(v for name, values in seeded.items() if name != "fmt" for v in values), key_id]
        run = tmp_path / "fuzz"
        prepare(run, seeded)
        seeding = time.monotonic() - started
        code, report, output = fuzz(run, url, key, keep)
        alive = serve.alive()
        server_log = serve.tail(8000)

    if report is None:
        # Stopped at the hard cap before writing its report (or it could not start): a hiccup, not a finding,
        # unless it had printed a failure by then.
        assert code is None, f"schemathesis exited {code} without a report:\n{output}"
        assert "FAILURES" not in output, output
        assert alive, f"the server died during the run:\n{server_log}"
        warnings.warn(f"the live fuzz run was stopped at the hard cap ({MAX_TIME + GRACE} s) before its report; "
                      "it had printed no failure", stacklevel=1)
        return
    cases = report["test_cases"]["generated"]
    record_property("fuzz_cases", cases)
    record_property("fuzz_seconds", round(report["running_time"], 1))
    print(f"\nlive fuzz: {cases} cases in {report['running_time']:.1f} s (seeding {seeding:.1f} s), stop: "
          f"{report['stop_reason']}, operations tested {report['operations']['tested']}/"
          f"{report['operations']['selected']}, phases "
          + ", ".join(f"{name}={phase['status']}" for name, phase in report["phases"].items()))
    assert alive, f"the server died during the run:\n{server_log}"
    # A failure is a finding: a 5xx or an answer the document does not describe (the output shows each with a curl
    # line that reproduces it). The time budget running out mid-phase is stop_reason "max_time", no failure.
    assert not report["failures"], f"schemathesis found failures (exit {code}):\n{output}"
    assert cases > 0 and report["operations"]["tested"] > 0, output
    if report["errors"]:
        # Transport errors (a timeout, a reset) while the server stays up: reported, not a landing blocker.
        warnings.warn(f"the live fuzz run had errors but no failures: {report['errors']}\n{output[-4000:]}",
                      stacklevel=1)
