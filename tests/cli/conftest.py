"""The CLI in-process (typer's CliRunner) against the API in-process (TestClient on PostgreSQL)."""

from collections.abc import Callable

import pytest
from typer.testing import CliRunner, Result

from tests.api.conftest import auth, client, make_key, ready_dataset  # noqa: F401  (fixtures, shared)

WORKER = {"Authorization": "Bearer test-worker-token"}


@pytest.fixture
def taas(client, auth, monkeypatch) -> Callable[..., Result]:  # noqa: ANN001, F811
    """Run `taas ARGS…` with the tenant's key; the client's HTTP calls go to the in-process app."""
    import client.commands as commands
    from client.cli import cli
    from client.sdk import Client

    monkeypatch.setattr(commands, "Client", lambda url, key: Client(url, key, http=client))
    env = {"TAAS_API_URL": "http://testserver", "TAAS_API_KEY": auth["Authorization"].split()[1],
           "COLUMNS": "200"}

    def run(*args: str, **extra_env: str) -> Result:
        return CliRunner().invoke(cli, list(args), env={**env, **extra_env}, catch_exceptions=False)

    return run
