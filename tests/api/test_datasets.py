"""Dataset upload: streamed, capped, structurally checked; processed in the background."""

import io
import tarfile
import zipfile

from tests.api.conftest import upload, wait_for
from tests.factories import dataset_members, write_tar, write_zip


def test_upload_flat_zip_becomes_ready_with_counts_and_split(client, auth, tmp_path):
    path = write_zip(tmp_path / "ds.zip", dataset_members(classes=3, per_class=10, size=8))
    resp = upload(client, auth, path)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["status"] == "processing" and body["id"].startswith("ds_")
    assert body["bytes"] == path.stat().st_size and len(body["sha256"]) == 64
    ds = wait_for(lambda: (r := client.get(f"/v1/datasets/{body['id']}", headers=auth).json())["status"] != "processing"
                  and r)
    assert ds["status"] == "ready", ds
    assert ds["classes"] == ["blue", "green", "red"]
    assert ds["class_counts"] == {"blue": 10, "green": 10, "red": 10}
    assert ds["num_images"] == 30
    assert ds["splits"]["train"] + ds["splits"]["val"] == 30 and ds["splits"]["val"] >= 3


def test_upload_split_tar_keeps_given_splits(client, auth, tmp_path):
    path = write_tar(tmp_path / "ds.tar.gz", dataset_members(classes=2, per_class=10, size=8, split=True))
    resp = upload(client, auth, path)
    assert resp.status_code == 201, resp.text
    ds = wait_for(lambda: (r := client.get(f"/v1/datasets/{resp.json()['id']}", headers=auth).json())["status"]
                  == "ready" and r)
    assert ds["layout"] == "split"
    assert ds["splits"] == {"train": 12, "val": 4, "test": 4}


def test_hostile_archives_get_a_4xx_naming_the_member(client, auth, tmp_path):
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tf:
        for name, data in dataset_members(classes=2, per_class=2, size=8).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("red/evil.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    resp = upload(client, auth, bad)
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["details"]["member"] == "red/evil.png" and err["code"]

    trav = tmp_path / "trav.zip"
    with zipfile.ZipFile(trav, "w") as zf:
        for name, data in dataset_members(classes=2, per_class=2, size=8).items():
            zf.writestr(name, data)
        zf.writestr("../escape.png", b"x")
    resp = upload(client, auth, trav)
    assert resp.status_code == 422 and resp.json()["error"]["details"]["member"] == "../escape.png", resp.text

    notarc = tmp_path / "hello.zip"
    notarc.write_bytes(b"just text, not an archive" * 10)
    resp = upload(client, auth, notarc)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "not_an_archive"

    single = write_zip(tmp_path / "single.zip", dataset_members(classes=1, per_class=4, size=8))
    resp = upload(client, auth, single)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "single_class"
    # Nothing was recorded for the refused uploads.
    assert client.get("/v1/datasets", headers=auth).json()["data"] == []


def test_corrupt_image_fails_processing_naming_the_member(client, auth, tmp_path):
    members = dataset_members(classes=2, per_class=3, size=8)
    members["green/broken.png"] = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
    resp = upload(client, auth, write_zip(tmp_path / "broken.zip", members))
    assert resp.status_code == 201
    ds = wait_for(lambda: (r := client.get(f"/v1/datasets/{resp.json()['id']}", headers=auth).json())["status"]
                  != "processing" and r)
    assert ds["status"] == "failed"
    assert ds["error"]["code"] == "bad_image" and ds["error"]["member"] == "green/broken.png"


def test_upload_over_cap_is_413(client, auth, tmp_path):
    big = tmp_path / "big.zip"
    big.write_bytes(b"\0" * (3 * 1024 * 1024))
    resp = upload(client, auth, big)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "upload_too_large"


def test_upload_over_cap_without_content_length_is_cut_mid_stream(client, auth):
    def body():
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.zip\"\r\n\r\n"
        for _ in range(64):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    resp = client.post("/v1/datasets", headers={**auth, "Content-Type": "multipart/form-data; boundary=b"},
                       content=body())
    assert resp.status_code == 413


def test_not_multipart_and_missing_file_are_422(client, auth):
    assert client.post("/v1/datasets", headers=auth, json={}).json()["error"]["code"] == "invalid_upload"
    resp = client.post("/v1/datasets", headers=auth, data={"name": "x"}, files={"other": ("a", b"b")})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_upload"


def test_idempotent_upload_replays_the_first_dataset(client, auth, tmp_path):
    path = write_zip(tmp_path / "ds.zip", dataset_members(classes=2, per_class=3, size=8))
    first = upload(client, auth, path, **{"Idempotency-Key": "k1"})
    again = upload(client, auth, path, **{"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    other = write_zip(tmp_path / "other.zip", dataset_members(classes=2, per_class=4, size=8))
    clash = upload(client, auth, other, **{"Idempotency-Key": "k1"})
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "idempotency_mismatch"
    assert len(client.get("/v1/datasets", headers=auth).json()["data"]) == 1


def test_tenants_cannot_see_each_other(client, make_key, ready_dataset):
    other = make_key()
    assert client.get(f"/v1/datasets/{ready_dataset['id']}", headers=other).status_code == 404
    assert client.delete(f"/v1/datasets/{ready_dataset['id']}", headers=other).status_code == 404


def test_auth_and_scopes(client, make_key, tmp_path):
    assert client.get("/v1/datasets").status_code == 401
    assert client.get("/v1/datasets", headers={"Authorization": "Bearer taas_nope_nope"}).status_code == 401
    reader = make_key(scopes=("read",))
    assert client.get("/v1/datasets", headers=reader).status_code == 200
    path = write_zip(tmp_path / "ds.zip", dataset_members(classes=2, per_class=2, size=8))
    assert upload(client, reader, path).status_code == 403
    assert client.get("/v1/keys", headers=reader).status_code == 403
