"""The client installs on its own: a fresh virtualenv with `.[client]` from this checkout (never `taas` by name: on
PyPI that is an unrelated project) has the SDK and the `taas` client commands, and none of the server's packages."""

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.procs import app_in_thread

SERVER_ONLY = ("fastapi", "sqlalchemy", "celery", "asyncpg", "onnxruntime", "uvicorn", "torch", "torchvision",
               "psycopg", "alembic", "redis", "sse_starlette", "structlog")
PACKAGES = ("core", "client", "app", "worker")


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with only `.[client]` installed, from a copy of the checkout (pip builds in the source tree)."""
    tmp = tmp_path_factory.mktemp("client-install")
    src = tmp / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "static"))
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    pip = [str(tmp / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run([*pip, f"{src}[client]"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "venv"


def _run(venv: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TAAS_", "PYTHON"))}
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], capture_output=True, text=True, timeout=120,
                          env={**clean, "COLUMNS": "200", **env}, cwd=venv)  # not the checkout: no stray imports


def test_no_server_package_is_installed(venv):
    code = ("import importlib.util as u, json; "
            f"print(json.dumps([m for m in {list(SERVER_ONLY)!r} if u.find_spec(m) is not None]))")
    done = _run(venv, "python", "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_sdk_imports(venv):
    done = _run(venv, "python", "-c", "from client import Client, APIError; import client.sdk; print(Client)")
    assert done.returncode == 0 and "client.sdk.Client" in done.stdout, done.stderr


def test_taas_help_lists_the_client_commands_and_no_server_command(venv):
    done = _run(venv, "taas", "--help")
    assert done.returncode == 0, done.stderr
    commands = set(re.findall(r"^│ (\w+) ", done.stdout, re.M))
    assert commands == {"datasets", "jobs", "models", "predict"}, done.stdout


@pytest.fixture(scope="module")
def live(client) -> Iterator[str]:  # noqa: ANN001  (the in-process app's settings and database)
    """The API on a real port, for the installed client to call."""
    with app_in_thread() as (host, port):
        yield f"http://{host}:{port}"


def test_the_client_commands_work_against_a_live_api(venv, live, ready_dataset, auth):
    key = auth["Authorization"].split()[1]
    listed = _run(venv, "taas", "datasets", "ls", TAAS_API_URL=live, TAAS_API_KEY=key)
    assert listed.returncode == 0, listed.stderr
    assert ready_dataset["id"] in listed.stdout
    shown = _run(venv, "taas", "datasets", "show", ready_dataset["id"], "--json", TAAS_API_URL=live,
                 TAAS_API_KEY=key)
    assert shown.returncode == 0 and '"status": "ready"' in shown.stdout, shown.stderr
    refused = _run(venv, "taas", "jobs", "ls", TAAS_API_URL=live, TAAS_API_KEY="taas_nope_nope")
    assert refused.returncode == 1 and refused.stderr.startswith("error 401"), refused.stderr
