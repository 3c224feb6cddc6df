"""Importing fastreid_slr registers every component in fast-reid's registries, once."""
import fastreid_slr
from fastreid.config import get_cfg
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.modeling.backbones import BACKBONE_REGISTRY
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY


def test_components_registered():
    assert META_ARCH_REGISTRY.get("SLR").__module__ == "fastreid_slr.modeling.slr_arch"
    assert BACKBONE_REGISTRY.get("build_dual_resnet_backbone").__module__.startswith("fastreid_slr.")
    for name in ("PersonX", "MSMT17TrainVal", "ProceduralA", "ProceduralB"):
        assert DATASET_REGISTRY.get(name).__module__.startswith("fastreid_slr.data.")
    # fast-reid's own components are untouched
    assert META_ARCH_REGISTRY.get("Baseline").__module__.startswith("fastreid.")
    assert DATASET_REGISTRY.get("Market1501").__module__.startswith("fastreid.")


def test_slr_config_namespace_every_key_commented():
    """Every key add_slr_config creates sits under a comment in config.py (a comment may cover a
    group of consecutive keys, like K1 and K2)."""
    cfg = fastreid_slr.add_slr_config(get_cfg())
    assert fastreid_slr.add_slr_config(cfg) is cfg  # idempotent
    assert {"MODE", "CLUSTER", "REFINE", "SOURCE", "LOSS", "EMA"} <= set(cfg.SLR)
    lines = [line.strip() for line in open(fastreid_slr.config.__file__)]
    keys = [i for i, line in enumerate(lines) if line.startswith("_C.") and "CN()" not in line]
    assert len(keys) > 40
    for i in keys:
        j = i - 1
        while lines[j].startswith("_C.") and "CN()" not in lines[j]:
            j -= 1
        assert lines[j].startswith("#"), f"config.py line {i + 1} has no comment: {lines[i]}"
