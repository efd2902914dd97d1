"""Answers the live fuzz run (tests/security/test_live_fuzz.py) found undocumented or incomplete, pinned in process."""

import pytest

from tests.api.test_jobs import spec


def test_the_dry_run_answer_is_documented_and_matches_its_schema(client, auth, ready_dataset):
    from app.jobs.schemas import DryRunRead

    responses = client.app.openapi()["paths"]["/v1/jobs"]["post"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/DryRunRead"}
    resp = client.post("/v1/jobs?dry_run=true", headers=auth, json=spec(ready_dataset["id"]))
    assert resp.status_code == 200, resp.text
    assert DryRunRead.model_validate(resp.json()).model_dump(mode="json") == resp.json()


@pytest.mark.parametrize("method,path,allowed", [
    ("TRACE", "/v1/jobs", "GET, POST"),  # two routes on one path: Starlette named the first one's method only
    ("PATCH", "/v1/aliases/prod", "DELETE, GET, PUT"),
    ("OPTIONS", "/v1/webhooks/wh_x", "DELETE, GET"),
])
def test_a_405_names_every_method_of_the_path_in_allow(client, auth, method, path, allowed):
    resp = client.request(method, path, headers=auth)
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"
    assert resp.headers["allow"] == allowed


def test_an_unreadable_image_is_named_without_an_object_address():
    from app.datasets.processing import ArchiveError, decode_image
    from app.serving.preprocess import BadImage, decode

    with pytest.raises(BadImage) as bad:
        decode(b"not an image", max_pixels=100)
    with pytest.raises(ArchiveError) as archived:
        decode_image("a.png", b"not an image")
    for exc in (bad.value, archived.value):
        assert "object at 0x" not in str(exc) and "not an image in a format this server reads" in str(exc)
