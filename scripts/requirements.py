"""Print the base dependencies and those of the named extras, one a line, from pyproject.toml (the Dockerfile
installs each image's from this, before the code is copied, so a code change rebuilds in seconds)."""

import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
extras = [d for extra in sys.argv[1:] for d in project["optional-dependencies"][extra]]
print("\n".join(project["dependencies"] + extras))
