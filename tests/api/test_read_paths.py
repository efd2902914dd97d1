"""The hot reads (the key check, GET a job, the dry run) answer the same on both databases.

On PostgreSQL they run on the event loop through app.pg (asyncpg, the key and the resource in one statement); on
SQLite through the ORM in a worker thread. Every test here runs on both, with the same expectations, so the two
paths cannot drift apart. Rows are written directly with the ORM: no upload or worker is needed."""

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from tests.conftest import reset_caches


@dataclass
class Backend:
    name: str
    client: TestClient
    db_url: str | None

    def key(self, tenant: str, scopes: tuple[str, ...] = ("read", "write")) -> tuple[dict[str, str], str]:
        from app.db import get_sessionmaker
        from app.keys.service import create_key

        with get_sessionmaker()() as session:
            row, key = create_key(session=session, tenant=tenant, scopes=list(scopes))
        return {"Authorization": f"Bearer {key}"}, row.id

    def add(self, *rows: object) -> None:
        from app.db import get_sessionmaker

        with get_sessionmaker()() as session:
            session.add_all(rows)
            session.commit()


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    mp = pytest.MonkeyPatch()
    mp.setenv("TAAS_DATA_DIR", str(tmp_path_factory.mktemp(request.param)))
    mp.setenv("TAAS_SECRET_KEY", "test-pepper")
    mp.setenv("TAAS_WORKER_TOKEN", "test-worker-token")
    mp.delenv("TAAS_BROKER_URL", raising=False)
    db_url = None
    if request.param == "postgresql":
        db_url = request.getfixturevalue("pg_url")
        mp.setenv("TAAS_DATABASE_URL", db_url)
    else:
        mp.delenv("TAAS_DATABASE_URL", raising=False)
    reset_caches()
    from app.main import create_app
    from app.migrate import upgrade

    if db_url is None:
        upgrade()
    with TestClient(create_app()) as c:
        yield Backend(request.param, c, db_url)
    mp.undo()
    reset_caches()


def tenant() -> str:
    return f"t{secrets.token_hex(4)}"


def dataset(owner: str, status: str = "ready", classes: tuple[str, ...] = ("cat", "dog", "eel")):
    from app.models import Dataset
    from core.ids import new_id

    return Dataset(id=new_id("ds"), tenant=owner, name="d", status=status, bytes=1, sha256="0" * 64, kind="zip",
                   layout="flat", num_images=6, classes=list(classes), class_counts={c: 2 for c in classes},
                   blob_key="datasets/none.zip")


def weights(owner: str | None, arch: str, source: str = "upload"):
    from app.models import BaseWeights
    from core.ids import new_id

    return BaseWeights(id=new_id("bm"), tenant=owner, arch=arch, source=source, name=None, sha256="0" * 64, bytes=1,
                       blob_key="weights/none.safetensors")


def model(owner: str, arch: str):
    from app.models import Model
    from core.ids import new_id

    return Model(id=new_id("model"), tenant=owner, job_id=new_id("job"), dataset_id="ds_x", arch=arch,
                 classes=["a", "b"], metrics={}, preprocessing={}, lineage={}, config={})


def spec(ds_id: str, arch: str = "resnet18", source: str = "none") -> dict:
    return {"dataset_id": ds_id, "base_model": {"arch": arch, "weights": source},
            "hyperparameters": {"epochs": 3, "image_size": 32}}


def dry(b: Backend, auth: dict[str, str], body: dict):  # noqa: ANN201
    return b.client.post("/v1/jobs", params={"dry_run": "true"}, headers=auth, json=body)


def tenant_with_job(b: Backend) -> tuple[str, dict[str, str], str]:
    """A fresh tenant with a key, a ready dataset and a queued job: (tenant, auth headers, job id)."""
    owner = tenant()
    auth, _ = b.key(owner)
    ds = dataset(owner)
    b.add(ds)
    return owner, auth, b.client.post("/v1/jobs", headers=auth, json=spec(ds.id)).json()["id"]


def error(resp) -> tuple[int, str]:  # noqa: ANN001
    return resp.status_code, resp.json()["error"]["code"]


def test_get_job_answers_as_the_list_does(backend: Backend):
    owner = tenant()
    auth, _ = backend.key(owner)
    ds = dataset(owner)
    backend.add(ds)
    made = backend.client.post("/v1/jobs", headers=auth, json=spec(ds.id))
    assert made.status_code == 201, made.text
    job_id = made.json()["id"]
    for _ in range(2):  # queued, then cancelled (with finished_at and cancel_requested_at set)
        got = backend.client.get(f"/v1/jobs/{job_id}", headers=auth)
        assert got.status_code == 200 and got.headers["content-type"] == "application/json"
        listed = backend.client.get("/v1/jobs", headers=auth).json()["data"]  # the ORM and FastAPI's serialiser
        assert got.json() == listed[0]
        assert got.json()["created_at"].endswith("Z") and len(got.json()["created_at"]) == 27  # microseconds
        backend.client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    assert got.json()["status"] == "cancelled" and got.json()["finished_at"] is not None


def test_get_job_refuses_before_it_reveals(backend: Backend):
    owner, other = tenant(), tenant()
    auth, key_id = backend.key(owner)
    other_auth, _ = backend.key(other)
    ds = dataset(owner)
    backend.add(ds)
    job_id = backend.client.post("/v1/jobs", headers=auth, json=spec(ds.id)).json()["id"]
    path = f"/v1/jobs/{job_id}"
    key = auth["Authorization"].removeprefix("Bearer ")
    assert error(backend.client.get(path)) == (401, "missing_api_key")
    assert error(backend.client.get(path, headers={"Authorization": "Bearer nope"})) == (401, "invalid_api_key")
    wrong = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")  # the right prefix, a wrong secret
    assert error(backend.client.get(path, headers={"Authorization": f"Bearer {wrong}"})) == (401, "invalid_api_key")
    unknown = f"taas_{'0' * 12}_{key.split('_', 2)[2]}"  # no such prefix
    assert error(backend.client.get(path, headers={"Authorization": f"Bearer {unknown}"})) == (401, "invalid_api_key")
    # Another tenant's job and a missing one look the same.
    assert error(backend.client.get(path, headers=other_auth)) == (404, "job_not_found")
    assert error(backend.client.get("/v1/jobs/job_00000000000000000000000000", headers=auth)) == (404, "job_not_found")
    # A wrong key learns nothing about a job, existing or not.
    assert error(backend.client.get("/v1/jobs/job_missing", headers={"Authorization": f"Bearer {wrong}"})) == (
        401, "invalid_api_key")
    # Revoked: refused at its very next request.
    assert backend.client.get(path, headers=auth).status_code == 200
    admin, _ = backend.key(owner, ("admin",))
    assert backend.client.delete(f"/v1/keys/{key_id}", headers=admin).status_code == 204
    assert error(backend.client.get(path, headers=auth)) == (401, "invalid_api_key")


def test_dry_run_resolves_every_weights_source(backend: Backend):
    owner, other = tenant(), tenant()
    auth, _ = backend.key(owner)
    ds, foreign_ds = dataset(owner), dataset(other)
    own_bm, public_bm, foreign_bm, wrong_arch_bm = (weights(owner, "resnet18"), weights(None, "resnet18"),
                                                   weights(other, "resnet18"), weights(owner, "mobilenet_v3_small"))
    own_model, foreign_model, wrong_arch_model = model(owner, "resnet18"), model(other, "resnet18"), model(
        owner, "mobilenet_v3_small")
    backend.add(ds, foreign_ds, own_bm, public_bm, foreign_bm, wrong_arch_bm, own_model, foreign_model,
                wrong_arch_model)

    ok = dry(backend, auth, spec(ds.id))
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["weights_id"] is None and body["dataset_status"] == "ready"
    assert body["spec"]["freeze"]["policy"] == "head_only" and body["plan"]  # defaults filled in, a plan made
    from core import catalog

    head = {g["name"]: g for g in body["plan"]["block_groups"]}["head"]
    assert head["trainable_params"] == catalog.head_param_count("resnet18", 3)  # the dataset's 3 classes
    for source, expected in ((own_bm.id, own_bm.id), (public_bm.id, public_bm.id), (own_model.id, own_model.id)):
        resp = dry(backend, auth, spec(ds.id, source=source))
        assert resp.status_code == 200 and resp.json()["weights_id"] == expected, resp.text
    refused = {
        "bm_missing": "weights_unavailable", foreign_bm.id: "weights_unavailable",
        wrong_arch_bm.id: "invalid_combination", "model_missing": "weights_unavailable",
        foreign_model.id: "weights_unavailable", wrong_arch_model.id: "invalid_combination",
    }
    for source, code in refused.items():
        assert error(dry(backend, auth, spec(ds.id, source=source))) == (422, code), source
    assert error(dry(backend, auth, spec(foreign_ds.id))) == (404, "dataset_not_found")
    assert error(dry(backend, auth, spec("ds_missing"))) == (404, "dataset_not_found")
    # ImageNet weights: refused until imported, then the newest import of the architecture.
    imagenet = spec(ds.id, arch="convnext_tiny", source="imagenet")
    assert error(dry(backend, auth, imagenet)) == (422, "weights_unavailable")
    older, newer = weights(None, "convnext_tiny", "imagenet"), weights(None, "convnext_tiny", "imagenet")
    backend.add(older, newer, weights(owner, "convnext_tiny", "imagenet"))  # a tenant's row is never ImageNet's
    assert dry(backend, auth, imagenet).json()["weights_id"] == max(older.id, newer.id)
    # The dataset is checked before the weights, as on submit.
    assert error(dry(backend, auth, spec("ds_missing", source="bm_missing"))) == (404, "dataset_not_found")
    # A dry run writes nothing.
    assert backend.client.get("/v1/jobs", headers=auth).json()["data"] == []


def read_connections(db_url: str) -> int:
    import psycopg

    from app.pg import APPLICATION_NAME

    with psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND datname = "
                            "current_database()", (APPLICATION_NAME,)).fetchone()[0]


def test_a_read_survives_the_server_closing_its_connection(backend: Backend):
    if backend.db_url is None:
        pytest.skip("SQLite has no server connections")
    import psycopg

    from app.pg import APPLICATION_NAME

    owner = tenant()
    auth, _ = backend.key(owner)
    assert backend.client.get("/v1/jobs/job_missing", headers=auth).status_code == 404
    assert read_connections(backend.db_url) >= 1
    with psycopg.connect(backend.db_url.replace("+psycopg", ""), autocommit=True) as conn:
        killed = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name "
                              "= %s AND datname = current_database()", (APPLICATION_NAME,)).fetchone()[0]
    assert killed >= 1
    for _ in range(3):  # each pooled connection is gone; every read still answers
        assert error(backend.client.get("/v1/jobs/job_missing", headers=auth)) == (404, "job_not_found")


def test_requests_arriving_together_share_one_statement_and_keep_their_own_answers(backend: Backend):
    """Coalescing (app.pg.Coalesced): requests of several tenants, good and bad keys, one poisoned by a NUL byte
    and one cancelled, asked in the same pass of the event loop, each get exactly their own answer."""
    if backend.db_url is None:
        pytest.skip("SQLite reads through the ORM, one request at a time")
    import asyncio

    import asyncpg

    from app import pg
    from app.jobs.service import JOB_OF_KEY
    from app.keys.service import KEY_PREFIX, key_prefix

    people = [(owner, auth["Authorization"].removeprefix("Bearer "), job_id)
              for owner, auth, job_id in (tenant_with_job(backend) for _ in range(3))]
    asks = []  # (prefix, job id, expected key tenant or None, expected job id or None)
    for owner, key, job_id in people:
        asks.append((key_prefix(key), job_id, owner, job_id))  # its own job
        for _, _, other_job in people:
            if other_job != job_id:
                asks.append((key_prefix(key), other_job, owner, None))  # another tenant's: no row beside the key
    asks.append(("000000000000", people[0][2], None, None))  # no such key

    async def ask() -> None:
        try:
            before = JOB_OF_KEY.statements
            got = await asyncio.gather(*(JOB_OF_KEY.fetchrow(p, j) for p, j, _, _ in asks))
            assert JOB_OF_KEY.statements == before + 1  # all of them, one statement
            for (_, _, owner, job_id), row in zip(asks, got, strict=True):
                assert (row and row[f"{KEY_PREFIX}tenant"]) == owner
                assert (row and row["id"]) == job_id
            # A NUL byte spoils the statement: the batch is answered request by request.
            good, bad = asks[0], ("000000000000", "job_\x00")
            results = await asyncio.gather(JOB_OF_KEY.fetchrow(*good[:2]), JOB_OF_KEY.fetchrow(*bad),
                                           JOB_OF_KEY.fetchrow(*good[:2]), return_exceptions=True)
            assert results[0]["id"] == results[2]["id"] == good[3]
            assert isinstance(results[1], asyncpg.DataError)
            # A request cancelled while it waits leaves the others their answers.
            first = asyncio.ensure_future(JOB_OF_KEY.fetchrow(*good[:2]))
            doomed = asyncio.ensure_future(JOB_OF_KEY.fetchrow(*good[:2]))
            await asyncio.sleep(0)  # both have asked
            doomed.cancel()
            assert (await first)["id"] == good[3]
        finally:
            await pg.close()

    asyncio.run(ask())


def test_concurrent_requests_of_many_tenants_each_see_their_own(backend: Backend):
    from concurrent.futures import ThreadPoolExecutor

    people = [(auth, job_id) for _, auth, job_id in (tenant_with_job(backend) for _ in range(4))]
    bad = {"Authorization": "Bearer taas_000000000000_nope"}

    def one(n: int) -> tuple[int, int, str | None]:
        auth, job_id = people[n % 4]
        target = people[(n // 4) % 4][1]
        resp = backend.client.get(f"/v1/jobs/{target}", headers=bad if n % 7 == 0 else auth)
        return n, resp.status_code, resp.json().get("id")

    with ThreadPoolExecutor(16) as pool:
        for n, status, got in pool.map(one, range(160)):
            mine = people[n % 4][1] == people[(n // 4) % 4][1]
            if n % 7 == 0:
                assert status == 401
            elif mine:
                assert (status, got) == (200, people[n % 4][1])
            else:
                assert status == 404
