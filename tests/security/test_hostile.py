"""Hostile input: every crafted archive or request gets its specific 4xx and leaves no file or row behind."""

import json
import re
import select
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.security.conftest import WORKER, MiB, assert_nothing_left, storage_root, upload, wait_for
from tests.security.corpus import CASES, Case, good, zip_of
from tests.security.helpers import MULTIPART_CT, file_part, multipart, name_part, read_response, upload_head

CAP = 2 * MiB  # TAAS_MAX_UPLOAD_BYTES in tests/security/conftest.py


def _datasets(client, auth) -> list:  # noqa: ANN001
    return client.get("/v1/datasets", headers=auth).json()["data"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_archive(client, make_key, tmp_path, case: Case):
    auth = make_key()
    path = case.build(tmp_path)
    assert path.stat().st_size < CAP, "a corpus case must fit under the upload cap to reach the checks"
    resp = upload(client, auth, path)
    if case.background:
        assert resp.status_code == 201, resp.text
        ds_id = resp.json()["id"]
        ds = wait_for(lambda: (r := client.get(f"/v1/datasets/{ds_id}", headers=auth).json())["status"]
                      != "processing" and r)
        assert ds["status"] == "failed", ds
        assert ds["error"]["code"] == case.code and ds["error"]["member"] == case.member, ds["error"]
        assert ds["num_images"] is None and not (storage_root() / f"datasets/{ds_id}/manifest.json").exists()
    else:
        assert resp.status_code == case.status, resp.text
        err = resp.json()["error"]
        assert err["code"] == case.code, err
        if case.member is not None:
            assert err["details"]["member"] == case.member, err
        assert _datasets(client, auth) == []
    assert_nothing_left()


# --- the multipart request itself ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> bytes:  # noqa: ANN001
    return zip_of(good())(tmp_path_factory.mktemp("archive")).read_bytes()


BAD_REQUESTS = {
    "json-body": ("application/json", lambda a: b'{"file": "x"}', "invalid_upload"),
    "text-plain": ("text/plain", lambda a: a, "invalid_upload"),
    "urlencoded": ("application/x-www-form-urlencoded", lambda a: b"file=abc", "invalid_upload"),
    "multipart-mixed": ("multipart/mixed; boundary=b", lambda a: multipart(file_part(a)), "invalid_upload"),
    "no-content-type": (None, lambda a: a, "invalid_upload"),
    "no-boundary": ("multipart/form-data", lambda a: multipart(file_part(a)), "invalid_upload"),
    "boundary-mismatch": ("multipart/form-data; boundary=zz", lambda a: multipart(file_part(a)), "invalid_upload"),
    "garbage": (MULTIPART_CT, lambda a: b"\x00\xff garbage " * 100, "invalid_upload"),
    "no-closing-boundary": (MULTIPART_CT, lambda a: multipart(file_part(a), end=False), "invalid_upload"),
    "truncated-part": (MULTIPART_CT, lambda a: b"--b\r\n" + file_part(a)[:-100], "invalid_upload"),
    "two-file-parts": (MULTIPART_CT, lambda a: multipart(file_part(a), file_part(a)), "invalid_upload"),
    "no-disposition": (MULTIPART_CT, lambda a: multipart(b"Content-Type: application/zip\r\n\r\n" + a),
                       "invalid_upload"),
    "other-field-only": (MULTIPART_CT, lambda a: multipart(file_part(a, field="archive")), "invalid_upload"),
    "empty-file": (MULTIPART_CT, lambda a: multipart(file_part(b"")), "invalid_upload"),
    "huge-name": (MULTIPART_CT, lambda a: multipart(name_part(b"n" * 5000), file_part(a)), "invalid_upload"),
    "nul-in-name": (MULTIPART_CT, lambda a: multipart(file_part(a), name_part(b"a\x00b")), "invalid_name"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_malformed_upload_requests(client, make_key, archive, name):
    ctype, body, code = BAD_REQUESTS[name]
    auth = make_key()
    headers = {**auth, **({"Content-Type": ctype} if ctype else {})}
    resp = client.post("/v1/datasets", headers=headers, content=body(archive))
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == code
    assert _datasets(client, auth) == []
    assert_nothing_left()


def test_the_well_formed_request_of_the_corpus_is_accepted(client, make_key, archive):
    """The malformed cases above differ from this one by their fault alone."""
    auth = make_key()
    resp = client.post("/v1/datasets", headers={**auth, "Content-Type": MULTIPART_CT},
                       content=multipart(name_part("café ✓".encode()), file_part(archive)))
    assert resp.status_code == 201, resp.text
    assert resp.json()["name"] == "café ✓"


def test_upload_over_the_cap_by_content_length(client, make_key, tmp_path):
    auth = make_key()
    big = tmp_path / "big.zip"
    big.write_bytes(b"\0" * (CAP + 1))
    resp = upload(client, auth, big)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "upload_too_large"
    assert _datasets(client, auth) == []
    assert_nothing_left()


def test_upload_without_content_length_is_cut_off_mid_stream(server, client, make_key):
    """A chunked body that never ends: the server answers 413 soon after the cap, not at the end."""
    host, port = server
    auth = make_key()
    endless = 64 * CAP
    sent, answered = 0, False
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(upload_head(auth, "Transfer-Encoding: chunked\r\n"))
        first = b"--b\r\n" + file_part(b"")
        sock.sendall(f"{len(first):x}\r\n".encode() + first + b"\r\n")
        chunk = b"\0" * 65536
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        while sent < endless:
            if select.select([sock], [], [], 0)[0]:
                answered = True
                break
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                answered = True
                break
            sent += len(chunk)
        assert answered, "the server read the whole endless body"
        status, body = read_response(sock)
    assert status == 413 and json.loads(body)["error"]["code"] == "upload_too_large"
    assert sent < endless // 2
    assert client.get("/v1/datasets", headers=auth).json()["data"] == []
    assert_nothing_left()
    assert httpx.get(f"http://{host}:{port}/healthz", timeout=10).status_code == 200


def test_client_disconnecting_mid_upload_leaves_nothing(server, client, make_key):
    host, port = server
    auth = make_key()
    tmp = storage_root() / "tmp"
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(upload_head(auth, f"Content-Length: {CAP - 1000}\r\n"))
        sock.sendall(b"--b\r\n" + file_part(b"PK\x03\x04" + b"\0" * (256 * 1024)))
        # The upload is streaming into a temporary file when the client goes away.
        wait_for(lambda: tmp.exists() and any(tmp.iterdir()), timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    assert_nothing_left()
    assert client.get("/v1/datasets", headers=auth).json()["data"] == []
    assert httpx.get(f"http://{host}:{port}/healthz", timeout=10).status_code == 200


# --- JSON bodies ---------------------------------------------------------------------------------------------

def _spec(**over) -> dict:
    return {"dataset_id": "ds_0nothere", "base_model": {"arch": "resnet18", "weights": "none"}, **over}


@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/jobs?dry_run=true", "/v1/keys"])
def test_oversized_json_is_413_by_content_length_and_by_counting(client, auth, route):
    big = json.dumps({**_spec(), "padding": "x" * (2 * MiB)}).encode()
    resp = client.post(route, headers={**auth, "Content-Type": "application/json"}, content=big)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large", resp.text

    def chunks():  # no Content-Length: the limit must bite while counting
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    resp = client.post(route, headers={**auth, "Content-Type": "application/json"}, content=chunks())
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large", resp.text
    assert client.get("/v1/jobs", headers=auth).json()["data"] == []


@pytest.mark.parametrize("path,declared", [("/v1/jobs", 2 * MiB), ("/v1/keys", 10**12),
                                           ("/internal/jobs/job_x/succeed", 65 * MiB)])
def test_a_declared_oversized_json_body_is_refused_before_it_is_read(server, auth, path, declared):
    """Only the headers are sent: the answer must not wait for a body (nor, under /internal, for the token)."""
    host, port = server
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: {auth['Authorization']}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n").encode())
        status, body = read_response(sock)
    assert status == 413 and json.loads(body)["error"]["code"] == "request_too_large"


def test_internal_json_bodies_have_a_larger_cap(client):
    """A worker's result (a confusion matrix of many classes) may pass 1 MiB; it is still bounded."""
    big = {"attempt": 1, "key": "k", "message": "m" * (2 * MiB)}
    resp = client.post("/internal/jobs/job_nothere/events", headers=WORKER, json=big)
    assert resp.status_code == 404, resp.text[:200]


@pytest.mark.parametrize("depth", [50, 900, 5000, 200_000])
def test_deeply_nested_json_is_422_never_500(client, auth, depth):
    nested = "[" * depth + "]" * depth
    bodies = {"/v1/jobs": f'{{"dataset_id": "ds_0nothere", "hyperparameters": {nested}}}'.encode(),
              "/v1/keys": f'{{"scopes": {nested}}}'.encode()}
    for route, body in bodies.items():
        assert len(body) < MiB
        resp = client.post(route, headers={**auth, "Content-Type": "application/json"}, content=body)
        assert resp.status_code == 422, (depth, route, resp.text[:300])
        assert resp.json()["error"]["code"] in ("validation_error", "invalid_json")


@pytest.mark.parametrize("body,ctype", [
    (b"\xff\xfe{not utf-8}", "application/json"),
    (b'{"dataset_id": "ds_x"', "application/json"),
    (b'{"dataset_id": NaN}', "application/json"),
    (json.dumps(_spec()).encode(), "text/plain"),
    (json.dumps(_spec()).encode(), "application/x-www-form-urlencoded"),
    (b"", "application/json"),
    (b"null", "application/json"),
    (b"[]", "application/json"),
])
def test_malformed_json_bodies_are_422(client, auth, body, ctype):
    resp = client.post("/v1/jobs", headers={**auth, "Content-Type": ctype}, content=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] in ("validation_error", "invalid_json")


BAD_SPECS = {
    "epochs-zero": _spec(hyperparameters={"epochs": 0}),
    "epochs-huge": _spec(hyperparameters={"epochs": 10**9}),
    "epochs-float": _spec(hyperparameters={"epochs": 2.5}),
    "epochs-string": _spec(hyperparameters={"epochs": "10; DROP TABLE jobs"}),
    "batch-negative": _spec(hyperparameters={"batch_size": -1}),
    "batch-huge": _spec(hyperparameters={"batch_size": 10**6}),
    "image-tiny": _spec(hyperparameters={"image_size": 1}),
    "image-huge": _spec(hyperparameters={"image_size": 100_000}),
    "lr-zero": _spec(hyperparameters={"learning_rate": 0}),
    "lr-negative": _spec(hyperparameters={"learning_rate": -1}),
    "lr-infinite": b'{"dataset_id": "ds_0nothere", "hyperparameters": {"learning_rate": Infinity}}',
    "lr-nan": b'{"dataset_id": "ds_0nothere", "hyperparameters": {"learning_rate": NaN}}',
    "dropout-nan": b'{"dataset_id": "ds_0nothere", "head": {"dropout": NaN}}',
    "momentum-one": _spec(hyperparameters={"momentum": 1.0}),
    "seed-negative": _spec(hyperparameters={"seed": -1}),
    "seed-huge": _spec(hyperparameters={"seed": 2**64}),
    "dropout-one": _spec(head={"dropout": 1.0}),
    "unknown-optimizer": _spec(hyperparameters={"optimizer": "__import__('os').system('id')"}),
    "unknown-arch": _spec(base_model={"arch": "../../etc/passwd", "weights": "none"}),
    "weights-path": _spec(base_model={"arch": "resnet18", "weights": "/etc/passwd"}),
    "weights-url": _spec(base_model={"arch": "resnet18", "weights": "http://evil.example/w.pt"}),
    "dataset-id-injection": _spec(dataset_id="ds_x' OR '1'='1"),
    "dataset-id-missing": {"base_model": {"arch": "resnet18", "weights": "none"}},
    "freeze-until-unknown": _spec(freeze={"policy": "until", "until": "layer99"}),
    "freeze-unknown-policy": _spec(freeze={"policy": "everything"}),
    "unknown-top-field": _spec(callback_url="http://evil.example"),
    "unknown-nested-field": _spec(hyperparameters={"epochs": 1, "import_path": "os.system"}),
    "wrong-type-section": _spec(hyperparameters=[1, 2, 3]),
    "null-section": _spec(hyperparameters=None),
}


@pytest.mark.parametrize("name", list(BAD_SPECS))
def test_out_of_range_and_unknown_spec_fields_are_422(client, auth, name):
    for route in ("/v1/jobs", "/v1/jobs?dry_run=true"):
        body = BAD_SPECS[name]
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        resp = client.post(route, headers={**auth, "Content-Type": "application/json"}, content=raw)
        assert resp.status_code == 422, (route, resp.text)
        assert resp.json()["error"]["code"] == "validation_error"
    assert client.get("/v1/jobs", headers=auth).json()["data"] == []


@pytest.mark.parametrize("batch_size,image_size", [(512, 512), (256, 448), (512, 256)])
def test_a_spec_that_would_exhaust_a_worker_is_refused(client, auth, ready_dataset, batch_size, image_size):
    body = _spec(dataset_id=ready_dataset["id"],
                 hyperparameters={"batch_size": batch_size, "image_size": image_size})
    for route in ("/v1/jobs", "/v1/jobs?dry_run=true"):
        resp = client.post(route, headers=auth, json=body)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["code"] == "spec_too_large"
    assert client.get("/v1/jobs", headers=auth).json()["data"] == []
    ok = _spec(dataset_id=ready_dataset["id"], hyperparameters={"batch_size": 256, "image_size": 224})
    assert client.post("/v1/jobs?dry_run=true", headers=auth, json=ok).status_code == 200


# --- base models: safetensors checked without torch -----------------------------------------------------------

def _safetensors(tensors: dict[str, list[int]], dtype: str = "U8", header: dict | None = None) -> bytes:
    """A safetensors file with zero-filled tensors (1-byte dtype keeps a real architecture's file small)."""
    meta, offset = {}, 0
    for name, shape in tensors.items():
        n = 1
        for d in shape:
            n *= d
        meta[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header if header is not None else meta).encode()
    return len(raw).to_bytes(8, "little") + raw + b"\0" * offset


def _smallest_arch() -> tuple[str, dict[str, list[int]]]:
    from core import catalog

    def size(arch: str) -> int:
        total = 0
        for shape in catalog.get_arch(arch)["weights"].values():
            n = 1
            for d in shape:
                n *= d
            total += n
        return total

    arch = min(catalog.arch_names(), key=size)
    return arch, {k: list(v) for k, v in catalog.get_arch(arch)["weights"].items()}


class _Pwned:
    def __reduce__(self):  # noqa: ANN204
        return (exec, ("open(__import__('os').environ['PWN_MARKER'], 'w').write('pwned')",))


def _pickle_bombs() -> dict[str, bytes]:
    import pickle
    import zipfile as zf
    from io import BytesIO

    plain = pickle.dumps({"weight": _Pwned()}, protocol=2)
    buf = BytesIO()
    with zf.ZipFile(buf, "w") as z:  # torch.save's zip layout, with a hostile data.pkl
        z.writestr("archive/data.pkl", pickle.dumps(_Pwned()))
        z.writestr("archive/version", "3")
    # A pickle whose first 8 bytes read as a small header length, so the header parser gets further.
    sneaky = (40).to_bytes(8, "little") + pickle.dumps(_Pwned(), protocol=0)
    return {"pickle": plain, "torch-zip": buf.getvalue(), "pickle-small-length": sneaky}


@pytest.fixture
def register(client, tmp_path, monkeypatch):  # noqa: ANN001
    """register_file on a written file; asserts that a refusal stores nothing."""
    from app.basemodels.service import register_file
    from app.db import get_sessionmaker
    from app.errors import Invalid

    monkeypatch.setenv("PWN_MARKER", str(tmp_path / "pwned"))

    def run(data: bytes, arch: str) -> str:
        src = tmp_path / "weights.safetensors"
        src.write_bytes(data)
        before = set((storage_root() / "base_models").glob("*")) if (storage_root() / "base_models").exists() \
            else set()
        with get_sessionmaker()() as session, pytest.raises(Invalid) as exc:
            register_file(session=session, arch=arch, src=src, source="upload", tenant="t-hostile")
        after = set((storage_root() / "base_models").glob("*")) if (storage_root() / "base_models").exists() \
            else set()
        assert after == before and not (tmp_path / "pwned").exists()
        return exc.value.code

    return run


def test_base_model_with_wrong_shapes_missing_or_extra_tensors(register):
    arch, weights = _smallest_arch()
    first = next(iter(weights))
    wrong = {**weights, first: [d + 1 for d in weights[first]] or [2]}
    assert register(_safetensors(wrong), arch) == "weights_mismatch"
    missing = {k: v for k, v in weights.items() if k != first}
    assert register(_safetensors(missing), arch) == "weights_mismatch"
    extra = {**weights, "evil.backdoor": [4]}
    assert register(_safetensors(extra), arch) == "weights_mismatch"
    transposed = {**weights, first: list(reversed(weights[first]))} if len(set(weights[first])) > 1 else wrong
    assert register(_safetensors(transposed), arch) == "weights_mismatch"


@pytest.mark.parametrize("name", ["pickle", "torch-zip", "pickle-small-length"])
def test_pickle_disguised_as_safetensors_is_never_unpickled(register, name):
    arch, _ = _smallest_arch()
    assert register(_pickle_bombs()[name], arch) == "invalid_safetensors"


HEADERS = {
    "empty": b"",
    "short": b"\x01\x02",
    "huge-length": (2**63).to_bytes(8, "little") + b"{}",
    "length-past-end": (1000).to_bytes(8, "little") + b"{}",
    "not-json": (4).to_bytes(8, "little") + b"\xff\xfe\xfd\xfc",
    "json-list": (2).to_bytes(8, "little") + b"[]",
    "entry-not-object": _safetensors({}, header={"w": [1, 2]}),
    "offsets-strings": _safetensors({}, header={"w": {"dtype": "U8", "shape": [2], "data_offsets": ["0", "2"]}}),
    "offsets-floats": _safetensors({}, header={"w": {"dtype": "U8", "shape": [2], "data_offsets": [0.0, 2.0]}}),
    "offsets-negative": _safetensors({}, header={"w": {"dtype": "U8", "shape": [2], "data_offsets": [-2, 0]}}),
    "offsets-three": _safetensors({}, header={"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 1, 2]}}),
    "dtype-list": _safetensors({}, header={"w": {"dtype": ["U8"], "shape": [2], "data_offsets": [0, 2]}}),
    "dtype-unknown": _safetensors({}, header={"w": {"dtype": "OBJ", "shape": [2], "data_offsets": [0, 2]}}),
    "shape-bool": _safetensors({}, header={"w": {"dtype": "U8", "shape": [True, 2], "data_offsets": [0, 2]}}),
    "shape-huge": _safetensors({}, header={"w": {"dtype": "U8", "shape": [2**40, 2**40], "data_offsets": [0, 2]}}),
    "overlap": _safetensors({}, header={"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                                        "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}),
    "metadata-not-object": (lambda h: len(h).to_bytes(8, "little") + h)(b'{"__metadata__": 5}'),
}


@pytest.mark.parametrize("name", list(HEADERS))
def test_malformed_safetensors_headers_are_invalid_not_crashes(register, name):
    arch, _ = _smallest_arch()
    assert register(HEADERS[name], arch) in ("invalid_safetensors", "weights_mismatch")


# --- nothing users send is ever unpickled ---------------------------------------------------------------------

def _sources(*folders: str) -> list[Path]:
    return [p for f in folders for p in (ROOT / f).rglob("*.py") if ".venv" not in p.parts]


def test_every_torch_load_passes_weights_only_true():
    calls = []
    for path in _sources("app", "worker"):
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            call = text[m.start():i]
            calls.append((path.relative_to(ROOT), call))
            assert re.search(r"weights_only\s*=\s*True", call), f"{path}: {call}"
    assert calls, "no torch.load found: the scan looks in the wrong place"
    aliasing = re.compile(r"from torch import .*\bload\b|=\s*torch\.load\b(?!\s*\()|getattr\(torch, ['\"]load")
    for path in _sources("app", "worker"):  # no aliasing around the check, no raw unpickling of files
        text = path.read_text()
        assert not aliasing.search(text), path
        assert not re.search(r"\bpickle\.loads?\(|\bdill\.|\bjoblib\.load\(", text), path


def test_the_api_never_imports_torch():
    offenders = [str(p.relative_to(ROOT)) for p in _sources("app")
                 if re.search(r"^\s*(import torch|from torch\b|import torchvision|from torchvision\b)",
                              p.read_text(), re.M)]
    assert offenders == []
    code = "import app.main, app.cli, sys; app.main.create_app(); assert 'torch' not in sys.modules, 'torch'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "TAAS_DATA_DIR": "/nonexistent-taas-test"})
    assert proc.returncode == 0, proc.stderr[-2000:]


# --- characters the database cannot hold -----------------------------------------------------------------

def test_nul_characters_anywhere_are_4xx_never_500(client, auth):
    from tests.security.routes import public_routes

    for r in public_routes(client.app):
        if r.params:
            resp = client.request(r.method, r.url(dict.fromkeys(r.params, "x%00y")), headers=auth)
            assert 400 <= resp.status_code < 500, f"{r}: {resp.status_code} {resp.text[:200]}"
        elif r.method == "GET":
            resp = client.get(r.path, params={"after": "a\x00b"}, headers=auth)
            assert 400 <= resp.status_code < 500 or resp.status_code == 200, f"{r}: {resp.status_code}"
    resp = client.post("/v1/keys", headers=auth, json={"scopes": ["read"], "name": "a\u0000b"})
    assert resp.status_code == 422, resp.text
    resp = client.post("/v1/jobs", headers=auth, json=_spec(dataset_id="ds_\u0000"))
    assert resp.status_code == 422, resp.text
