"""For other front ends: CORS preflights for configured origins, and an OpenAPI document where every public
operation has a summary, an example and its 4xx errors."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

ORIGIN = "https://dash.example.com"
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def cors_client(client: TestClient) -> Iterator[TestClient]:
    """The app built with TAAS_CORS_ORIGINS set (same database as client)."""
    from app.config import get_settings
    from app.main import create_app

    settings = get_settings()
    before = settings.cors_origins
    settings.cors_origins = [ORIGIN, "http://localhost:5173"]
    try:
        app = create_app()
    finally:
        settings.cors_origins = before
    yield TestClient(app)  # no lifespan: the module's client already runs one


def preflight(c: TestClient, origin: str, method: str = "PUT", headers: str = "authorization,content-type"):
    return c.options("/v1/aliases/prod", headers={"Origin": origin, "Access-Control-Request-Method": method,
                                                  "Access-Control-Request-Headers": headers})


def test_preflight_from_an_allowed_origin(cors_client):
    resp = preflight(cors_client, ORIGIN)
    assert resp.status_code == 200, resp.text
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert "PUT" in resp.headers["access-control-allow-methods"]
    allowed = resp.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "access-control-allow-credentials" not in resp.headers  # bearer keys, never cookies
    assert int(resp.headers["access-control-max-age"]) > 0


def test_preflight_from_another_origin_is_refused(cors_client):
    resp = preflight(cors_client, "https://evil.example")
    assert resp.status_code == 400
    assert "access-control-allow-origin" not in resp.headers


def test_preflight_for_a_header_not_allowed_is_refused(cors_client):
    assert preflight(cors_client, ORIGIN, headers="x-made-up").status_code == 400


def test_actual_requests_carry_the_cors_headers_and_expose_the_download_ones(cors_client, auth):
    resp = cors_client.get("/v1/models", headers={**auth, "Origin": ORIGIN})
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    exposed = resp.headers["access-control-expose-headers"].lower()
    assert "etag" in exposed and "content-range" in exposed
    # Errors too, so a browser client can read them.
    denied = cors_client.get("/v1/models", headers={"Origin": ORIGIN})
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == ORIGIN


def test_no_cors_unless_configured(client, auth):
    resp = client.get("/v1/models", headers={**auth, "Origin": ORIGIN})
    assert resp.status_code == 200 and "access-control-allow-origin" not in resp.headers
    assert preflight(client, ORIGIN).status_code == 405


def test_origins_are_read_comma_separated():
    from app.config import Settings

    assert Settings(cors_origins=" https://a.example , http://b.example:8080/,").cors_origins == [
        "https://a.example", "http://b.example:8080"]
    assert Settings().cors_origins == [] or True  # the environment may set it; the default is none
    assert Settings.model_fields["cors_origins"].default_factory() == []


# --- OpenAPI ------------------------------------------------------------------------------------------------


def _resolve(doc: dict, node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = doc["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _has_example(doc: dict, node: Any, depth: int = 0) -> bool:
    """An example or examples on the node, or on what it refers to, its items, properties or alternatives."""
    node = _resolve(doc, node)
    if not isinstance(node, dict) or depth > 4:
        return False
    if node.get("example") is not None or node.get("examples"):
        return True
    children = [node.get("schema"), node.get("items"), *(node.get("properties") or {}).values(),
                *node.get("anyOf", []), *node.get("oneOf", []), *node.get("allOf", [])]
    return any(_has_example(doc, c, depth + 1) for c in children if c is not None)


def _operations(doc: dict) -> list[tuple[str, str, dict]]:
    return [(m.upper(), path, op) for path, item in doc["paths"].items() for m, op in item.items() if m in METHODS]


@pytest.fixture(scope="module")
def doc(client) -> dict:
    return client.app.openapi()


def test_internal_routes_are_not_in_the_document(doc):
    assert doc["paths"] and not [p for p in doc["paths"] if p.startswith("/internal")]


def test_every_operation_has_a_summary_an_example_and_its_4xx_errors(doc):
    problems = []
    for method, path, op in _operations(doc):
        where = f"{method} {path}"
        if not (op.get("summary") or "").strip():
            problems.append(f"{where}: no summary")
        # Where something is sent or answered, an example of it; error examples count only for bodiless routes
        # (a DELETE answering 204), where what can go wrong is all there is to show.
        bodies = [*op.get("requestBody", {}).get("content", {}).values(),
                  *(media for status, r in op["responses"].items() if status.startswith("2")
                    for media in r.get("content", {}).values())]
        fallback = [*op.get("parameters", []), *(media for status, r in op["responses"].items()
                                                  for media in r.get("content", {}).values())]
        if not any(_has_example(doc, s) for s in (bodies or fallback)):
            problems.append(f"{where}: no example of its request or answer")
        errors = [s for s in op["responses"] if s.startswith("4")]
        if not errors:
            problems.append(f"{where}: no 4xx errors documented")
        for status in errors:
            content = op["responses"][status].get("content", {}).get("application/json", {})
            if _resolve(doc, content.get("schema")) != _resolve(doc, {"$ref": "#/components/schemas/ErrorBody"}):
                problems.append(f"{where}: {status} is not the contract's error body")
    assert not problems, "\n".join(problems)


def test_the_routes_of_this_work_name_their_error_codes(doc):
    def codes(path: str, method: str, status: str) -> set[str]:
        media = doc["paths"][path][method]["responses"][status]["content"]["application/json"]
        return set(media["examples"])

    assert codes("/v1/models/{model_id}/predict", "post", "409") >= {"onnx_unavailable"}
    assert codes("/v1/models/{model_id}/predict", "post", "422") >= {"bad_image", "validation_error"}
    assert codes("/v1/models/{model_id}/predict", "post", "413") == {"upload_too_large", "too_many_images"}
    assert codes("/v1/models/{model_id}", "delete", "409") == {"model_in_use"}
    assert codes("/v1/aliases/{name}", "put", "404") == {"model_not_found"}
    assert codes("/v1/models/{model_id}/artifacts/{fmt}", "get", "416") == {"range_not_satisfiable"}
    download = doc["paths"]["/v1/models/{model_id}/artifacts/{fmt}"]["get"]
    assert {"206", "304"} <= set(download["responses"])
    assert {p["name"] for p in download["parameters"]} >= {"if-none-match", "range", "if-range"}
    body = doc["paths"]["/v1/models/{model_id}/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["properties"]["files"]["type"] == "array"


def test_the_document_is_served(client):
    resp = client.get("/openapi.json")
    assert resp.status_code == 200 and resp.json()["info"]["title"] == "taas"
