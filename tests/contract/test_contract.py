"""The contract pinned: the public OpenAPI document equals the committed snapshot, every integer a client sends is
bounded in it, and the suite still collects every test it had. Update both files deliberately, in the commit that
changes them: `python -m tests.contract.snapshot`."""

import difflib
import json

import pytest

from tests.contract.snapshot import COLLECTED, OPENAPI, current_openapi

HOW = "if the change is deliberate, run `python -m tests.contract.snapshot` and commit the new files with it"


def test_the_openapi_document_equals_the_committed_snapshot():
    now, committed = current_openapi(), OPENAPI.read_text()
    if now != committed:
        diff = "".join(difflib.unified_diff(committed.splitlines(True), now.splitlines(True),
                                            "tests/contract/openapi.json", "the app's document", n=2))
        pytest.fail(f"the public OpenAPI document changed ({HOW}):\n{diff[:6000]}")


def _integers(schema: dict, components: dict, seen: frozenset = frozenset()):  # noqa: ANN202
    """Every integer schema inside schema (following $refs), with its path."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name not in seen:
            yield from _integers(components[name], components, seen | {name})
        return
    if schema.get("type") == "integer":
        yield schema
    for sub in (*schema.get("properties", {}).values(), *schema.get("anyOf", []), *schema.get("oneOf", []),
                *schema.get("allOf", [])):
        yield from _integers(sub, components, seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _integers(schema[key], components, seen)


def test_every_integer_a_client_sends_is_bounded():
    """An unbounded integer reaches the database driver, which refuses it with a 500 (schemathesis found
    `?before=57880272688736354304`): every integer parameter and request-body field has a minimum and a maximum."""
    doc = json.loads(OPENAPI.read_text())
    components = doc["components"]["schemas"]
    unbounded, checked = [], 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            places = [(f"{p['in']} {p['name']}", p["schema"]) for p in op.get("parameters", [])]
            for ctype, content in op.get("requestBody", {}).get("content", {}).items():
                places.append((f"body {ctype}", content.get("schema", {})))
            for where, schema in places:
                for s in _integers(schema, components):
                    checked += 1
                    if "minimum" not in s or not ({"maximum", "exclusiveMaximum"} & set(s)):
                        unbounded.append(f"{method.upper()} {path}: {where}")
    assert checked > 20
    assert not unbounded, unbounded


def test_the_suite_still_collects_every_test(request):
    """The redesign moves tests and never drops one: the whole suite's count equals the committed count."""
    config = request.config
    whole = (config.args_source == pytest.Config.ArgsSource.TESTPATHS and not config.option.keyword
             and not config.option.markexpr and not config.option.deselect)
    if not whole:
        pytest.skip("counts only when the whole suite runs (`make test`)")
    committed = json.loads(COLLECTED.read_text())["collected"]
    count = len(request.session.items)
    assert count >= committed, f"the suite collects {count} tests, {committed - count} fewer than the committed count"
    assert count == committed, f"the suite collects {count} tests, {count - committed} more: {HOW}"
