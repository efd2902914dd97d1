"""The app's route table, flattened, so that security tests cover every route, new ones included."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Probes, the scrape and the dashboard page (/) are unauthenticated by design (a metrics token is optional): not
# tenant routes.
SKIPPED = re.compile(r"^/($|docs|redoc|openapi\.json|healthz$|readyz$|metrics$)")


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str  # with {params}
    route: Any  # the APIRoute

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)(?::\w+)?}", self.path)

    @property
    def internal(self) -> bool:
        return self.path.startswith("/internal")

    @property
    def scope(self) -> str | None:
        """The scope its require() dependency demands (app.deps marks it), None when there is none."""
        # A route that checks the key itself (app.deps.demands) carries its scope; the rest declare it.
        return getattr(self.route.endpoint, "required_scope", None) or _scope(self.route.dependant)

    @property
    def has_body(self) -> bool:
        return getattr(self.route, "body_field", None) is not None

    def url(self, values: dict[str, str]) -> str:
        missing = [p for p in self.params if p not in values]
        assert not missing, f"{self.method} {self.path}: tests/security needs a value for {missing}"
        return re.sub(r"{(\w+)(?::\w+)?}", lambda m: values[m.group(1)], self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _scope(dependant: Any) -> str | None:
    for dep in dependant.dependencies:
        found = getattr(dep.call, "required_scope", None) or _scope(dep)
        if found:
            return found
    return None


def all_routes(app: Any) -> list[RouteInfo]:
    """Every (method, path) the app serves, but the docs and /healthz."""
    out = []
    for path, methods, route in _walk(app.router.routes):
        if SKIPPED.match(path):
            continue
        for method in sorted(methods or ()):
            if method != "HEAD":
                out.append(RouteInfo(method, path, route))
    return out


def _walk(routes: list[Any]) -> Iterator[tuple[str, set[str], Any]]:
    for r in routes:
        if hasattr(r, "effective_route_contexts"):  # FastAPI includes routers lazily
            for ctx in r.effective_route_contexts():
                yield ctx.path, ctx.methods, ctx.original_route
        elif hasattr(r, "routes") and not hasattr(r, "endpoint"):
            prefix = getattr(r, "path", "")
            for path, methods, route in _walk(r.routes):
                yield prefix + path, methods, route
        else:
            yield r.path, getattr(r, "methods", None) or set(), r


def public_routes(app: Any) -> list[RouteInfo]:
    return [r for r in all_routes(app) if not r.internal]


def internal_routes(app: Any) -> list[RouteInfo]:
    return [r for r in all_routes(app) if r.internal]
