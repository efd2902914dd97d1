"""Supported architectures: construction, head replacement, block groups and weight loading.

Every architecture keeps its native module names, so ImageNet checkpoints load as published. The
native final ``nn.Linear`` (``Arch.head_module``) is replaced by ``nn.Sequential(nn.Dropout(p),
nn.Linear(in_features, num_classes))``, always with the Dropout (p may be 0), so the new head's keys
are ``<head_module>.1.weight`` and ``<head_module>.1.bias`` whatever the dropout.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torchvision
from efficientnet_lite_pytorch import EfficientNet
from torch import Tensor, nn

HEAD = "head"


class WeightsMismatch(ValueError):
    """A state dict does not fit the architecture; `key` names the first offending tensor."""

    def __init__(self, message: str, *, key: str):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Arch:
    """How one architecture is built, split into block groups and run as features → head."""

    family: str
    build: Callable[[], nn.Module]  # native model, 1000 classes, random init
    head_module: str  # the native final Linear that build_model replaces
    groups: tuple[tuple[str, tuple[str, ...]], ...]  # (name, module prefixes) in forward order, head last
    features: Callable[[nn.Module, Tensor], Tensor]  # everything the head group does not do
    classify: Callable[[nn.Module, Tensor], Tensor]  # the head group, on what `features` returns
    # One function per backbone group, in forward order; composed they compute `features` (the last one pools).
    stages: Callable[[nn.Module, tuple[tuple[str, tuple[str, ...]], ...]], list[Callable[[Tensor], Tensor]]]

    def stage_fns(self, model: nn.Module) -> list[Callable[[Tensor], Tensor]]:
        """The backbone of `model` as one callable per block group, so it can be cut between any two."""
        return self.stages(model, self.groups[:-1])


def _torchvision(name: str) -> Callable[[], nn.Module]:
    # weights=None: never a download; weights arrive as safetensors.
    return lambda: torchvision.models.get_model(name, weights=None)


def _resnet_features(m: nn.Module, x: Tensor) -> Tensor:
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return torch.flatten(m.avgpool(x), 1)


def _pooled_features(m: nn.Module, x: Tensor) -> Tensor:
    return torch.flatten(m.avgpool(m.features(x)), 1)


def _convnext_features(m: nn.Module, x: Tensor) -> Tensor:
    # ConvNeXt's classifier starts with a LayerNorm2d, so it takes the 4-d pooled map.
    return m.avgpool(m.features(x))


def _lite_features(m: nn.Module, x: Tensor) -> Tensor:
    return torch.flatten(m._avg_pooling(m.extract_features(x)), 1)


def _lite_classify(m: nn.Module, f: Tensor) -> Tensor:
    return m._fc(m._dropout(f))


def _classifier(m: nn.Module, f: Tensor) -> Tensor:
    return m.classifier(f)


def _fc(m: nn.Module, f: Tensor) -> Tensor:
    return m.fc(f)


def _resnet_stages(m: nn.Module, groups) -> list[Callable[[Tensor], Tensor]]:
    return [lambda x: m.maxpool(m.relu(m.bn1(m.conv1(x)))), m.layer1, m.layer2, m.layer3,
            lambda x: torch.flatten(m.avgpool(m.layer4(x)), 1)]


def _sequential_stages(pool: Callable[[nn.Module, Tensor], Tensor]):
    # torchvision's `features` is an nn.Sequential and each group a run of its children.
    def stages(m: nn.Module, groups) -> list[Callable[[Tensor], Tensor]]:
        fns = [nn.Sequential(*(m.get_submodule(p) for p in prefixes)) for _, prefixes in groups]
        last = fns[-1]
        return [*fns[:-1], lambda x: pool(m, last(x))]

    return stages


def _flat_pool(m: nn.Module, x: Tensor) -> Tensor:
    return torch.flatten(m.avgpool(x), 1)


def _map_pool(m: nn.Module, x: Tensor) -> Tensor:
    return m.avgpool(x)


def _lite_stages(m: nn.Module, groups) -> list[Callable[[Tensor], Tensor]]:
    def blocks(prefixes: tuple[str, ...]) -> Callable[[Tensor], Tensor]:
        def run(x: Tensor) -> Tensor:
            for prefix in prefixes:
                idx = int(prefix.rsplit(".", 1)[1])
                # As EfficientNet.extract_features: drop connect grows linearly with the block's depth.
                rate = m._global_params.drop_connect_rate
                x = m._blocks[idx](x, drop_connect_rate=rate * idx / len(m._blocks) if rate else rate)
            return x
        return run

    fns = [lambda x: m._swish(m._bn0(m._conv_stem(x)))]
    fns += [blocks(prefixes) for name, prefixes in groups if name.startswith("stage")]
    fns.append(lambda x: torch.flatten(m._avg_pooling(m._swish(m._bn1(m._conv_head(x)))), 1))
    return fns


def _indexed(prefix: str, *indices: int) -> tuple[str, ...]:
    return tuple(f"{prefix}.{i}" for i in indices)


_RESNET_GROUPS = (("stem", ("conv1", "bn1")), ("layer1", ("layer1",)), ("layer2", ("layer2",)),
                  ("layer3", ("layer3",)), ("layer4", ("layer4",)), (HEAD, ("fc",)))

ARCHS: dict[str, Arch] = {
    "resnet18": Arch("resnet", _torchvision("resnet18"), "fc", _RESNET_GROUPS, _resnet_features, _fc, _resnet_stages),
    "resnet50": Arch("resnet", _torchvision("resnet50"), "fc", _RESNET_GROUPS, _resnet_features, _fc, _resnet_stages),
    # Stages are runs of inverted residual blocks with the same output width.
    "mobilenet_v3_small": Arch(
        "mobilenet_v3", _torchvision("mobilenet_v3_small"), "classifier.3",
        (("stem", _indexed("features", 0)), ("stage1", _indexed("features", 1)),
         ("stage2", _indexed("features", 2, 3)), ("stage3", _indexed("features", 4, 5, 6)),
         ("stage4", _indexed("features", 7, 8)), ("stage5", _indexed("features", 9, 10, 11)),
         ("top", _indexed("features", 12)), (HEAD, ("classifier",))),
        _pooled_features, _classifier, _sequential_stages(_flat_pool)),
    "efficientnet_b0": Arch(
        "efficientnet", _torchvision("efficientnet_b0"), "classifier.1",
        (("stem", _indexed("features", 0)),
         *((f"stage{i}", _indexed("features", i)) for i in range(1, 8)),
         ("top", _indexed("features", 8)), (HEAD, ("classifier",))),
        _pooled_features, _classifier, _sequential_stages(_flat_pool)),
    # A downsampling layer belongs to the stage it feeds, as in the ConvNeXt paper.
    "convnext_tiny": Arch(
        "convnext", _torchvision("convnext_tiny"), "classifier.2",
        (("stem", _indexed("features", 0)), ("stage1", _indexed("features", 1)),
         ("stage2", _indexed("features", 2, 3)), ("stage3", _indexed("features", 4, 5)),
         ("stage4", _indexed("features", 6, 7)), (HEAD, ("classifier",))),
        _convnext_features, _classifier, _sequential_stages(_map_pool)),
    # Lite0's 16 blocks in its 7 stages (repeats 1, 2, 2, 3, 3, 4, 1), as in efficientnet_b0.
    "efficientnet_lite0": Arch(
        "efficientnet_lite", lambda: EfficientNet.from_name("efficientnet-lite0"), "_fc",
        (("stem", ("_conv_stem", "_bn0")), ("stage1", _indexed("_blocks", 0)),
         ("stage2", _indexed("_blocks", 1, 2)), ("stage3", _indexed("_blocks", 3, 4)),
         ("stage4", _indexed("_blocks", 5, 6, 7)), ("stage5", _indexed("_blocks", 8, 9, 10)),
         ("stage6", _indexed("_blocks", 11, 12, 13, 14)), ("stage7", _indexed("_blocks", 15)),
         ("top", ("_conv_head", "_bn1")), (HEAD, ("_fc",))),
        _lite_features, _lite_classify, _lite_stages),
}

# How each architecture is cut into block groups, in words (the catalogue carries it to the API and the docs).
GROUPING = {
    "resnet18": "stem (conv1, bn1; relu and max-pool follow), layer1-layer4 (the four residual stages), head (fc)",
    "resnet50": "stem (conv1, bn1; relu and max-pool follow), layer1-layer4 (the four bottleneck stages), head (fc)",
    "mobilenet_v3_small": "stem (first conv), stage1-stage5 (runs of inverted residual blocks with the same output "
                          "width), top (last 1×1 conv), head (classifier)",
    "efficientnet_b0": "stem (first conv), stage1-stage7 (the seven MBConv stages), top (1×1 conv to 1280), "
                       "head (classifier)",
    "convnext_tiny": "stem (patchify conv), stage1-stage4 (each with the downsampling layer that feeds it), "
                     "head (LayerNorm, flatten, Linear)",
    "efficientnet_lite0": "stem (first conv), stage1-stage7 (the seven MBConv stages: 1, 2, 2, 3, 3, 4, 1 blocks), "
                          "top (1×1 conv to 1280), head (dropout, fc)",
}


def get_arch(name: str) -> Arch:
    """The architecture's definition, or ValueError naming the supported ones."""
    if name not in ARCHS:
        raise ValueError(f"unknown arch {name!r}; supported: {', '.join(ARCHS)}")
    return ARCHS[name]


def group_names(arch: str) -> list[str]:
    """Block group names in forward order; the last is always `head`."""
    return [name for name, _ in get_arch(arch).groups]


def group_of(arch: str, key: str) -> str:
    """The block group a parameter or buffer name belongs to."""
    for name, prefixes in get_arch(arch).groups:
        if any(key == p or key.startswith(p + ".") for p in prefixes):
            return name
    raise KeyError(f"{key!r} is in no block group of {arch}")


def native_head_keys(arch: str) -> list[str]:
    """The final Linear's keys as published (1000 ImageNet classes)."""
    head = get_arch(arch).head_module
    return [f"{head}.weight", f"{head}.bias"]


def head_keys(arch: str) -> list[str]:
    """The replaced head's keys: stable whatever the dropout or number of classes."""
    head = get_arch(arch).head_module
    return [f"{head}.1.weight", f"{head}.1.bias"]


def head_in_features(model: nn.Module, arch: str) -> int:
    """Width of the features the final Linear sees (before or after replacement)."""
    head = model.get_submodule(get_arch(arch).head_module)
    linear = head[1] if isinstance(head, nn.Sequential) else head
    return linear.in_features


def replace_head(model: nn.Module, arch: str, num_classes: int, dropout: float = 0.0) -> nn.Module:
    """Swap the native final Linear for Dropout + a fresh Linear, N(0, 0.01) weights and zero bias."""
    linear = nn.Linear(head_in_features(model, arch), num_classes)
    nn.init.normal_(linear.weight, 0.0, 0.01)
    nn.init.zeros_(linear.bias)
    model.set_submodule(get_arch(arch).head_module, nn.Sequential(nn.Dropout(dropout), linear))
    return model


def build_model(arch: str, num_classes: int, *, dropout: float = 0.0,
                state_dict: Mapping[str, Tensor] | None = None) -> nn.Module:
    """The architecture with a new head; backbone weights from state_dict (native naming) if given."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    model = replace_head(get_arch(arch).build(), arch, num_classes, dropout)
    if state_dict is not None:
        load_weights(model, arch, state_dict)
    return model


def load_weights(model: nn.Module, arch: str, state_dict: Mapping[str, Tensor]) -> bool:
    """Load every backbone tensor strictly, the head only if it fits; returns whether the head loaded."""
    target = model.state_dict()
    new_head, old_head = head_keys(arch), native_head_keys(arch)
    picked: dict[str, Tensor] = {}
    for key, current in target.items():
        if key in new_head:
            continue
        if key.endswith("num_batches_tracked"):
            # Only matters for BN with momentum=None; published checkpoints often omit it.
            if key in state_dict:
                picked[key] = state_dict[key]
            continue
        if key not in state_dict:
            raise WeightsMismatch(f"missing tensor {key!r} for {arch}", key=key)
        if tuple(state_dict[key].shape) != tuple(current.shape):
            raise WeightsMismatch(f"tensor {key!r} has shape {tuple(state_dict[key].shape)}, {arch} "
                                  f"expects {tuple(current.shape)}", key=key)
        picked[key] = state_dict[key]
    for key in state_dict:
        if key not in target and key not in old_head:
            raise WeightsMismatch(f"unexpected tensor {key!r} for {arch}", key=key)
    # A head trained here uses the new keys, a published one the native keys; either loads if it fits.
    source = new_head if all(k in state_dict for k in new_head) else old_head
    pairs = list(zip(source, new_head, strict=True))
    fits = all(k in state_dict and state_dict[k].shape == target[n].shape for k, n in pairs)
    if fits:
        picked.update({n: state_dict[k] for k, n in pairs})
    model.load_state_dict(picked, strict=False)
    return fits


# EfficientNet-Lite was trained in TF with (x - 127) / 128 and a 224 crop of a 256 resize.
_LITE0_PREPROCESSING = {"resize": 256, "crop": 224, "interpolation": "bilinear",
                        "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def pretrained_weights_enum(arch: str) -> torchvision.models.WeightsEnum | None:
    """The torchvision weights the `imagenet` import expects; None for non-torchvision archs."""
    get_arch(arch)
    if arch == "efficientnet_lite0":
        return None
    return torchvision.models.get_model_weights(arch).DEFAULT


def default_preprocessing(arch: str) -> dict:
    """The input pipeline the published ImageNet weights were evaluated with."""
    weights = pretrained_weights_enum(arch)
    if weights is None:
        return dict(_LITE0_PREPROCESSING)
    # Reading the enum's transforms only reads metadata; nothing is downloaded.
    t = weights.transforms()
    return {"resize": t.resize_size[0], "crop": t.crop_size[0], "interpolation": t.interpolation.value,
            "mean": list(t.mean), "std": list(t.std)}
