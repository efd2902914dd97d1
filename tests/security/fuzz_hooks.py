"""Schemathesis hooks of the live fuzz run (loaded by the schemathesis process through schemathesis.toml).

The seeded resources (FUZZ_KEEP_IDS: comma-separated ids and alias names) must outlive the run, or every case
after the first DELETE that names one would stop at a 404: the path parameters name them half the time, and the
stateful phase follows links from list and read answers straight to DELETE. A DELETE of a seeded resource is
sent for an id of the same kind that does not exist instead (a 404, as any generated id gets), so the run still
deletes what it creates itself (and checks that it is gone) but never what was seeded, the dev key included."""

import os

import schemathesis

KEEP = frozenset(filter(None, os.environ.get("FUZZ_KEEP_IDS", "").split(",")))


def _decoy(value: str) -> str:
    """An id of the same kind (prefix) that names nothing."""
    prefix, sep, _ = value.partition("_")
    return f"{prefix}_{'0' * 26}" if sep else f"{value}-gone"


@schemathesis.hook
def before_call(context, case, kwargs) -> None:  # noqa: ANN001
    if case.method.upper() != "DELETE" or not case.path_parameters:
        return
    for name, value in list(case.path_parameters.items()):
        if isinstance(value, str) and value in KEEP:
            case.path_parameters[name] = _decoy(value)
