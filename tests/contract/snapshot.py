"""The public contract as committed files: the OpenAPI document and the number of collected tests.

`python -m tests.contract.snapshot` rewrites both (run it, review the diff, commit it with the change that made it);
tests/contract/test_contract.py fails while either differs from what the code gives."""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OPENAPI = HERE / "openapi.json"
COLLECTED = HERE / "collected.json"


def render(document: dict) -> str:
    """The committed form: sorted keys, two-space indents, a final newline (stable, reviewable diffs)."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def current_openapi() -> str:
    """The app's public OpenAPI document, built in a fresh process with default settings (no TAAS_* variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAAS_")}
    with tempfile.TemporaryDirectory() as tmp:
        env["TAAS_DATA_DIR"] = tmp
        code = "import json; from app.main import create_app; print(json.dumps(create_app().openapi()))"
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
    if done.returncode:
        raise RuntimeError(f"building the OpenAPI document failed:\n{done.stderr[-3000:]}")
    return render(json.loads(done.stdout))


def collected_count() -> int:
    """How many tests `pytest` (the whole suite, as `make test` runs it) collects."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                         cwd=ROOT, check=True, capture_output=True, text=True, timeout=600).stdout
    found = re.search(r"^(\d+) tests? collected in ", out, re.M)
    if found is None:
        raise RuntimeError(f"no count in pytest's output:\n{out[-2000:]}")
    return int(found.group(1))


def main() -> None:
    OPENAPI.write_text(current_openapi())
    count = collected_count()
    COLLECTED.write_text(json.dumps({"collected": count}, indent=2) + "\n")
    print(f"wrote {OPENAPI.relative_to(ROOT)} and {COLLECTED.relative_to(ROOT)} ({count} tests)")


if __name__ == "__main__":
    main()
