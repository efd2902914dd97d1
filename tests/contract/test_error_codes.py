"""Each public route's OpenAPI responses name exactly the error codes it is seen to answer.

While the suite runs, tests/error_record.py records every error answer of the in-process apps as (route, method,
code, status). This test, ordered last (tests/conftest.py), judges the record:

(a) every code a route answered is one it declares (`app.openapi.errors(...)` on the route), and is registered
    (app.errors.CODES) with the status it was answered with;
(b) every code a public route declares was answered on that route by some test, so a route cannot declare codes it
    never answers (declaring all of them everywhere fails).

The record is complete only when the whole suite runs (`make test`: no paths, no -k/-m/--deselect), so the test
skips otherwise, unless TAAS_CHECK_ERROR_CODES=1 asks for it on a partial run, e.g. the in-process suites:
`TAAS_CHECK_ERROR_CODES=1 python -m pytest tests/unit tests/api tests/security tests/cli tests/contract
--ignore=tests/security/test_live_fuzz.py`. Servers in subprocesses are not recorded: a declared code needs an
in-process test."""

import pytest
from fastapi.routing import APIRoute

from tests import error_record

# Answered for any path, whatever the route: documented by the generic 4XX answer, not declared per route.
GLOBAL = {"not_found", "method_not_allowed", "http_error", "internal_error"}


def declared(route: APIRoute) -> set[str]:
    """The codes a route's OpenAPI responses name (app.openapi.errors gives each an example of its own)."""
    out: set[str] = set()
    for response in route.responses.values():
        out |= set(response.get("content", {}).get("application/json", {}).get("examples", {}))
    return out


def public_routes() -> dict[tuple[str, str], set[str]]:
    from app.main import create_app

    out: dict[tuple[str, str], set[str]] = {}
    for route in create_app().routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            for method in route.methods:
                out[(route.path, method)] = declared(route)
    return out


def whole_suite(config: pytest.Config) -> bool:
    """The condition of tests/contract/test_contract.py::test_the_suite_still_collects_every_test."""
    return (config.args_source == pytest.Config.ArgsSource.TESTPATHS and not config.option.keyword
            and not config.option.markexpr and not config.option.deselect)


def test_each_public_route_declares_the_codes_it_answers(request):
    if not (whole_suite(request.config) or error_record.on_demand()):
        pytest.skip(f"judges the whole suite's record (`make test`), or set {error_record.ON_DEMAND}=1")
    from app.errors import CODES

    routes = public_routes()
    recorded = set(error_record.RECORDED)
    assert recorded, "nothing was recorded: is tests/error_record.py installed?"
    unregistered = sorted(f"{m} {p}: {c} ({s})" for p, m, c, s in recorded
                          if c not in CODES or (s != CODES[c].status and c != "http_error"))
    answered: dict[tuple[str, str], set[str]] = {}
    for path, method, code, _ in recorded:
        answered.setdefault((path, method), set()).add(code)
    undeclared = sorted(f"{m} {p}: {c}" for (p, m), codes in answered.items() for c in codes
                        if c not in GLOBAL and (p, m) in routes and c not in routes[(p, m)])
    unmatched = sorted(f"{m} {p}: {c}" for (p, m), codes in answered.items() for c in codes
                       if p is None and c not in GLOBAL)
    never = sorted(f"{m} {p}: {c}" for (p, m), codes in routes.items()
                   for c in codes - answered.get((p, m), set()))
    pairs = sum(len(c) for c in routes.values())
    print(f"\nerror codes: {len(routes)} public routes declare {pairs} (route, code) pairs; "
          f"{pairs - len(never)} answered in process, {len(never)} never; {len(undeclared)} answered undeclared")
    assert not unregistered, f"answered with a code not in app.errors.CODES, or with another status: {unregistered}"
    assert not unmatched, f"answered without a route, with a route's code: {unmatched}"
    assert not undeclared, f"(a) answered but not declared on the route (add it to its errors(...)): {undeclared}"
    assert not never, (f"(b) declared but no in-process test answers it on the route (add a test, or drop the "
                       f"declaration if the route cannot answer it): {never}")

