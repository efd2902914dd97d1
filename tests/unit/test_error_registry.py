"""The error registry (app.errors.CODES) against the source: every code app/ raises or renders is registered, with
its family's status, and every registered code is raised or rendered somewhere. Read from the AST, so a new raise
site with an unregistered code fails here before it ships."""

import ast
from collections.abc import Iterator
from pathlib import Path

from app.errors import ARCHIVE_CODES
from tests.conftest import ROOT

ARCHIVE = set(ARCHIVE_CODES)  # inspect_archive's, which the dataset upload answers as `Invalid(code=exc.code)`
# Raised only while a stored dataset is processed: they fail the dataset (its `error.code`), never a request.
PROCESSING = {"bad_image", "image_too_large"}


def _trees() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted((ROOT / "app").rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def _families() -> dict[str, tuple[int, str | None]]:
    """Every TaasError class in app/: name -> (status, default code), following the bases."""
    from app.errors import TaasError

    out: dict[str, tuple[int, str | None]] = {"TaasError": (TaasError.status, TaasError.code)}
    classes = [node for _, tree in _trees() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    grew = True
    while grew:
        grew = False
        for node in classes:
            base = next((b.id for b in node.bases if isinstance(b, ast.Name) and b.id in out), None)
            if base is None or node.name in out:
                continue
            status, code = out[base]
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and isinstance(stmt.value, (ast.Tuple, ast.Constant)):
                    targets = stmt.targets[0].elts if isinstance(stmt.targets[0], ast.Tuple) else stmt.targets
                    values = stmt.value.elts if isinstance(stmt.value, ast.Tuple) else [stmt.value]
                    for t, v in zip(targets, values, strict=True):
                        if isinstance(t, ast.Name) and isinstance(v, ast.Constant):
                            status = v.value if t.id == "status" else status
                            code = v.value if t.id == "code" else code
            out[node.name], grew = (status, code), True
    return out


def _raises() -> list[tuple[str, str, str | None]]:
    """(where, family, code) for each construction of a TaasError class in app/; code None when not a literal."""
    families = _families()
    out = []
    for path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in families:
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                kw = next((k.value for k in node.keywords if k.arg == "code"), None)
                if kw is None:
                    out.append((where, node.func.id, families[node.func.id][1]))
                else:
                    out.append((where, node.func.id, kw.value if isinstance(kw, ast.Constant) else None))
    return out


def _rendered() -> set[str]:
    """Codes app/ renders without raising: `_error("code", ...)` in app.main, the HTTP status map there, and
    literal error bodies (`{"code": "..."}`)."""
    out: set[str] = set()
    for path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_error" \
                    and node.args and isinstance(node.args[0], ast.Constant):
                out.add(node.args[0].value)
            if isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values, strict=True):
                    if isinstance(k, ast.Constant) and k.value == "code" and isinstance(v, ast.Constant):
                        out.add(v.value)
                if path.name == "main.py" and all(isinstance(k, ast.Constant) and isinstance(k.value, int)
                                                  for k in node.keys):  # {404: "not_found", ...}
                    out |= {v.value for v in node.values if isinstance(v, ast.Constant)}
            if path.name == "main.py" and isinstance(node, ast.Call) and any(  # .get(status, "http_error")
                    isinstance(a, ast.Constant) and a.value == "http_error" for a in node.args):
                out.add("http_error")
    return out


def _archive_codes() -> set[str]:
    tree = ast.parse((ROOT / "app/datasets/archive.py").read_text())
    return {n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            and n.func.id == "ArchiveError" and n.args and isinstance(n.args[0], ast.Constant)}


def test_every_code_raised_in_app_is_registered_with_its_familys_status():
    from app.errors import CODES

    families = _families()
    raises = _raises()
    assert len(raises) > 80
    unregistered = [f"{w}: {f}({c!r})" for w, f, c in raises if c is not None and c not in CODES]
    assert not unregistered, f"raised but not in app.errors.CODES: {unregistered}"
    dynamic = [w for w, _, c in raises if c is None]
    assert dynamic == ["app/datasets/service.py:53"], f"a raise whose code is not a literal: {dynamic}"
    other = [f"{w}: {f} ({families[f][0]}) raises {c} ({CODES[c].status})" for w, f, c in raises
             if c is not None and families[f][0] != CODES[c].status]
    assert not other, f"a family raises a code of another status: {other}"


def test_the_archive_codes_the_upload_answers_are_registered():
    from app.errors import CODES

    assert _archive_codes() <= ARCHIVE | PROCESSING, _archive_codes() - ARCHIVE - PROCESSING
    assert "encrypted_member" in (ROOT / "app/datasets/archive.py").read_text()
    assert all(CODES[c].status == 422 for c in ARCHIVE)
    assert not (PROCESSING - {"bad_image"}) & set(CODES)  # bad_image is also the prediction's


def test_every_registered_code_is_raised_or_rendered():
    from app.errors import CODES

    rendered = _rendered()
    assert {"validation_error", "invalid_json", "not_found", "range_not_satisfiable", "http_error"} <= rendered
    produced = {c for _, _, c in _raises() if c is not None} | rendered | ARCHIVE
    assert rendered <= set(CODES), rendered - set(CODES)
    assert not set(CODES) - produced, f"registered but never raised or rendered: {sorted(set(CODES) - produced)}"


def test_openapi_keeps_no_list_of_its_own():
    import app.errors
    import app.openapi

    assert app.openapi.CODES is app.errors.CODES
