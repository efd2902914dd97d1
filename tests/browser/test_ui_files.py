"""The dashboard's page and files over HTTP, without a browser: security headers, no inline script, no HTML built
from strings, everything served locally."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import reset_caches

STATIC = Path(__file__).resolve().parents[2] / "app" / "ui" / "static"
SCRIPTS = sorted((STATIC / "js").rglob("*.js"))


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app without its lifespan: these routes need no database (settings point at a temporary dir anyway)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TAAS_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    mp.delenv("TAAS_CORS_ORIGINS", raising=False)
    reset_caches()
    from app.main import create_app

    yield TestClient(create_app())
    mp.undo()
    reset_caches()


def test_the_page_has_a_strict_csp_and_nosniff(http):
    resp = http.get("/")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    csp = resp.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
    assert directives["default-src"] == ["'self'"] and directives["script-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_the_page_has_no_inline_script_and_loads_nothing_from_elsewhere(http):
    html = http.get("/").text
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
    assert scripts and all(not s.strip() for s in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html)  # no inline handlers
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    for ref in re.findall(r"(?:src|href)=\"(/ui/[^\"]+)\"", html):
        resp = http.get(ref)
        assert resp.status_code == 200, ref
        assert resp.headers["x-content-type-options"] == "nosniff"


def test_static_files_are_served_with_types_and_caching(http):
    js = http.get("/ui/js/main.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert http.get("/ui/js/main.js", headers={"If-None-Match": js.headers["etag"]}).status_code == 304
    assert http.get("/ui/vendor/uplot/uPlot.iife.min.js").status_code == 200
    missing = http.get("/ui/js/nope.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert http.get("/ui/../main.py").status_code == 404
    assert http.get("/healthz").json() == {"ok": True}


def test_scripts_never_parse_strings_as_html_or_code():
    assert SCRIPTS
    banned = re.compile(r"\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(")
    offenders = [f"{p.name}:{n}" for p in SCRIPTS for n, line in enumerate(p.read_text().splitlines(), 1)
                 if banned.search(line)]
    assert not offenders, offenders


def test_every_module_import_resolves():
    for path in SCRIPTS:
        for target in re.findall(r"^import .* from \"(\.[^\"]+)\";", path.read_text(), re.M):
            assert (path.parent / target).resolve().is_file(), f"{path.name} imports {target}"



def test_file_requests_are_timed_under_one_route_label(http):
    from prometheus_client import REGISTRY

    labels = {"method": "GET", "route": "/ui", "status": "2xx"}

    def count() -> float:
        return REGISTRY.get_sample_value("taas_http_request_duration_seconds_count", labels) or 0.0

    before = count()
    http.get("/ui/css/app.css")
    http.get("/ui/js/views/job.js")
    assert count() == before + 2  # one label for every file, never one per path
