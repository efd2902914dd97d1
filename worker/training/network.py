"""A model cut into its block groups and run with the job's precision and memory format.

The frozen prefix (the first `cut` backbone groups) runs without autograd; what comes out of it is the
input of everything that trains, so it can also be computed once and cached when it never changes.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor, nn

from worker.training import architectures as A
from worker.training.data import Preprocessing
from worker.training.device import to_device
from worker.training.errors import TrainingCancelled


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX); elsewhere bf16 is emulated, slowly."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def cuda_supports_bf16(device: torch.device) -> bool:
    """Whether the GPU has native bf16 arithmetic (Ampere and later); older ones only emulate it, slowly."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch without the argument
        return torch.cuda.get_device_capability(device)[0] >= 8


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a spec's precision on `device`; None means plain fp32.

    `auto` is bf16 where the hardware has it natively; otherwise fp16 (with gradient scaling) on a GPU and
    fp32 on a CPU, where fp16 brings nothing.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise ValueError(f"unsupported precision {precision!r}")
    if device.type == "cuda":
        return torch.bfloat16 if cuda_supports_bf16(device) else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else None


class Network:
    """`model` as a list of stage functions (one per backbone group) and its head."""

    def __init__(self, model: nn.Module, arch: str, prep: Preprocessing, *, dtype: torch.dtype | None,
                 channels_last: bool, device: torch.device):
        self.model, self.arch, self.prep, self.dtype, self.device = model, arch, prep, dtype, device
        self.channels_last = channels_last
        self.stages = A.get_arch(arch).stage_fns(model)
        self.depth = len(self.stages)  # number of backbone groups
        self._classify = A.get_arch(arch).classify

    def autocast(self):
        """The job's mixed precision (a no-op for fp32)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def prepare(self, images: Tensor) -> Tensor:
        """uint8 images → normalised float input on the device, channels_last when the job uses it.

        The uint8 batch crosses to the device (a quarter of the float bytes) and is normalised there."""
        x = self.prep.normalize(to_device(images, self.device))
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def run(self, stages: Sequence[Callable[[Tensor], Tensor]], x: Tensor) -> Tensor:
        """Apply `stages` in order under the job's autocast."""
        with self.autocast():
            for stage in stages:
                x = stage(x)
        return x

    def prefix(self, x: Tensor, cut: int) -> Tensor:
        """The frozen groups' output: no autograd graph (nothing before the cut learns)."""
        if cut == 0:
            return x
        # no_grad rather than inference_mode: the first trainable layer saves this output for its backward pass,
        # which an inference tensor cannot be. Evaluation wraps everything in inference_mode instead.
        with torch.no_grad():
            return self.run(self.stages[:cut], x)

    def forward_from(self, hidden: Tensor, cut: int) -> tuple[Tensor, Tensor]:
        """(backbone features, logits) from the prefix's output."""
        features = self.run(self.stages[cut:], hidden)
        with self.autocast():
            return features, self._classify(self.model, features)

    def batched_prefix(self, images: Tensor, cut: int, batch_size: int,
                       should_stop: Callable[[], bool]) -> Iterator[Tensor]:
        """The prefix's output for every image, batch by batch (no autograd, cacheable)."""
        for i in range(0, len(images), batch_size):
            if should_stop():
                raise TrainingCancelled("training was cancelled")
            yield self.prefix(self.prepare(images[i: i + batch_size]), cut)


@contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """torch's deterministic algorithms for the duration of a job, as the spec asks; restored afterwards."""
    before, before_warn = torch.are_deterministic_algorithms_enabled(), \
        torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_before = torch.backends.cudnn.benchmark
    if enabled:
        # warn_only: an op without a deterministic kernel warns rather than failing the job.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)
        torch.backends.cudnn.benchmark = cudnn_before
