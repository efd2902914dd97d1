"""The API's async read pool (app.pg) lives and dies with the app: no connection outlives its lifespan."""

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import wait_for
from tests.api.test_read_paths import read_connections
from tests.conftest import reset_caches


def test_the_read_pool_closes_with_the_app(pg_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAAS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TAAS_DATABASE_URL", pg_url)
    monkeypatch.setenv("TAAS_SECRET_KEY", "test-pepper")
    monkeypatch.setenv("TAAS_WORKER_TOKEN", "test-worker-token")
    monkeypatch.delenv("TAAS_BROKER_URL", raising=False)
    reset_caches()
    from app.main import create_app

    before = read_connections(pg_url)
    try:
        with TestClient(create_app()) as c:
            assert c.get("/v1/jobs/job_x", headers={"Authorization": "Bearer taas_nope_nope"}).status_code == 401
            assert read_connections(pg_url) > before
        wait_for(lambda: read_connections(pg_url) <= before, timeout=10)  # the server sees each close shortly
    finally:
        reset_caches()
