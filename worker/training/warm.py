"""A warm worker: the heavy imports done before a job arrives.

`warm_up()` is for the worker process's start (Celery's worker_process_init); it builds no model and holds
no accelerator memory. The base weights that recent jobs used stay in memory too (worker/training/base_weights.py).
"""


def warm_up() -> None:
    """Import torch, torchvision and the training engine, and run one tiny convolution (kernel set-up)."""
    import torch
    import torchmetrics.functional.classification  # noqa: F401  (slow to import: 1-2 s)
    import torchvision  # noqa: F401
    from efficientnet_lite_pytorch import EfficientNet  # noqa: F401

    import worker.training.recipe  # noqa: F401

    with torch.inference_mode():
        torch.nn.functional.conv2d(torch.zeros(1, 3, 8, 8), torch.zeros(4, 3, 3, 3))
