"""The committed catalogue must be exactly what the generator produces from the real models."""

from core import catalog
from worker.training import catalog as generator
from worker.training.architectures import ARCHS


def test_committed_catalog_matches_a_fresh_generation():
    fresh = generator.generate()
    assert catalog.load_catalog() == fresh, "catalog drifted: run `python -m worker.training.catalog`"
    assert catalog.CATALOG_PATH.read_text() == generator.render(fresh)


def test_catalog_describes_the_real_models():
    entry = catalog.get_arch("resnet18")
    assert entry["total_params"] == 11_689_512
    assert sum(g["param_count"] for g in entry["block_groups"]) == entry["total_params"]
    assert entry["weights"]["fc.weight"] == [1000, 512]
    assert "bn1.running_mean" in entry["weights"]
    assert catalog.block_group_names("resnet18") == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert catalog.head_param_count("resnet18", 10) == 512 * 10 + 10
    assert catalog.head_param_count("mobilenet_v3_small", 1000) == catalog.get_arch(
        "mobilenet_v3_small")["block_groups"][-1]["param_count"]
    assert catalog.get_arch("vgg11") is None and catalog.block_group_names("vgg11") == []
    assert catalog.arch_names() == sorted(ARCHS)
