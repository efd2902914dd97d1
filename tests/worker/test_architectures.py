"""Every supported architecture: output width, block groups, freezing and weight loading."""

import pytest
import torch

from core import catalog
from worker.training import architectures as A
from worker.training.freeze import apply_freeze, frozen_groups

ARCHS = list(A.ARCHS)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 0])


@pytest.mark.parametrize("arch", ARCHS)
def test_output_width_and_split_forward(arch):
    torch.manual_seed(0)
    model = A.build_model(arch, 3, dropout=0.3).eval()
    x, _ = _batch()
    with torch.no_grad():
        out = model(x[:2])
        split = A.get_arch(arch).classify(model, A.get_arch(arch).features(model, x[:2]))
    assert out.shape == (2, 3)
    assert torch.equal(out, split)  # the frozen-backbone path computes the same function
    stages = A.get_arch(arch).stage_fns(model)
    assert len(stages) == len(A.group_names(arch)) - 1
    with torch.no_grad():
        hidden = x[:2]
        for stage in stages:  # one callable per backbone group: the network can be cut between any two
            hidden = stage(hidden)
        assert torch.equal(A.get_arch(arch).classify(model, hidden), out)
    head = model.get_submodule(A.get_arch(arch).head_module)
    assert isinstance(head[0], torch.nn.Dropout) and head[0].p == 0.3
    assert head[1].weight.std().item() == pytest.approx(0.01, rel=0.3)
    assert torch.count_nonzero(head[1].bias) == 0


@pytest.mark.parametrize("arch", ARCHS)
def test_block_groups_cover_every_parameter_exactly_once(arch):
    model = A.build_model(arch, 3)
    groups = A.get_arch(arch).groups
    assert groups[-1][0] == A.HEAD
    assert [name for name, _ in groups] == catalog.block_group_names(arch)
    for key in model.state_dict():
        owners = [name for name, prefixes in groups for p in prefixes if key == p or key.startswith(p + ".")]
        assert len(owners) == 1, (key, owners)
    assert set(A.head_keys(arch)) <= {k for k, _ in model.named_parameters() if A.group_of(arch, k) == A.HEAD}


def _step(model, optimizer):
    x, y = _batch()
    model.train()
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("policy", ["head_only", "until"])
def test_frozen_groups_do_not_change(arch, policy):
    torch.manual_seed(0)
    model = A.build_model(arch, 3)
    until = A.group_names(arch)[1] if policy == "until" else None
    frozen = frozen_groups(arch, policy, until)
    assert frozen == (A.group_names(arch)[:-1] if policy == "head_only" else A.group_names(arch)[:2])
    apply_freeze(model, arch, frozen)
    for key, p in model.named_parameters():
        assert p.requires_grad == (A.group_of(arch, key) not in frozen), key
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _step(model, torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01))
    after = model.state_dict()
    for key, value in before.items():
        if A.group_of(arch, key) in frozen:
            # bit-identical, buffers included: frozen BN keeps its running statistics despite model.train()
            assert torch.equal(value, after[key]), key
    assert all(not torch.equal(before[k], after[k]) for k in A.head_keys(arch))


def test_until_rejects_head_and_unknown_groups():
    with pytest.raises(ValueError, match="freeze.until"):
        frozen_groups("resnet18", "until", "head")
    with pytest.raises(ValueError, match="freeze.until"):
        frozen_groups("resnet18", "until", "stage9")
    with pytest.raises(ValueError, match="unknown arch"):
        A.build_model("vgg11", 3)


@pytest.mark.parametrize("arch", ARCHS)
def test_native_checkpoint_loads_and_mismatches_name_the_key(arch):
    torch.manual_seed(1)
    native = A.get_arch(arch).build().state_dict()  # what a published 1000-class checkpoint holds
    model = A.build_model(arch, 5, state_dict=native)
    loaded = model.state_dict()
    for key, value in native.items():
        if key not in A.native_head_keys(arch):
            assert torch.equal(loaded[key], value), key
    assert loaded[A.head_keys(arch)[0]].shape[0] == 5

    key = next(k for k, v in native.items() if v.dim() == 4)  # a conv kernel
    bad = dict(native, **{key: torch.zeros(1, 2, 3, 4)})
    with pytest.raises(A.WeightsMismatch, match=key) as info:
        A.build_model(arch, 5, state_dict=bad)
    assert info.value.key == key
    missing = {k: v for k, v in native.items() if k != key}
    with pytest.raises(A.WeightsMismatch, match=key):
        A.build_model(arch, 5, state_dict=missing)


@pytest.mark.parametrize("arch", ARCHS)
def test_trained_head_is_kept_only_when_it_fits(arch):
    torch.manual_seed(2)
    trained = A.build_model(arch, 3).state_dict()
    torch.manual_seed(3)
    same = A.build_model(arch, 3, state_dict=trained).state_dict()
    assert all(torch.equal(same[k], trained[k]) for k in trained)
    other = A.build_model(arch, 4, state_dict=trained).state_dict()
    assert other[A.head_keys(arch)[0]].shape[0] == 4
    assert all(torch.equal(other[k], trained[k]) for k in trained if k not in A.head_keys(arch))
