"""Importing fastreid_slr registers every component in fast-reid's registries, once; its config
function adds the SLR namespace only; the demo's renderer (procedural_reid) is no part of it."""
import os
import subprocess
import sys

import pytest

import fastreid_slr
import procedural_reid
from fastreid.config import get_cfg
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.modeling.backbones import BACKBONE_REGISTRY
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY


def test_components_registered():
    assert META_ARCH_REGISTRY.get("SLR").__module__ == "fastreid_slr.modeling.slr_arch"
    assert BACKBONE_REGISTRY.get("build_dual_resnet_backbone").__module__.startswith("fastreid_slr.")
    for name in ("PersonX", "MSMT17TrainVal"):
        assert DATASET_REGISTRY.get(name).__module__.startswith("fastreid_slr.data.")
    for name in ("ProceduralA", "ProceduralB"):  # registered by importing procedural_reid
        assert DATASET_REGISTRY.get(name).__module__.startswith("procedural_reid.")
    # fast-reid's own components are untouched
    assert META_ARCH_REGISTRY.get("Baseline").__module__.startswith("fastreid.")
    assert DATASET_REGISTRY.get("Market1501").__module__.startswith("fastreid.")


def test_the_plugin_imports_nothing_of_the_renderer():
    """Every module of fastreid_slr imported, in a fresh process: no procedural_reid, no procedural datasets."""
    code = ("import importlib, pkgutil, sys\n"
            "import fastreid_slr\n"
            "for m in pkgutil.walk_packages(fastreid_slr.__path__, 'fastreid_slr.'):\n"
            "    importlib.import_module(m.name)\n"
            "from fastreid.data.datasets import DATASET_REGISTRY\n"
            "print(sorted(n for n in sys.modules if n.split('.')[0] == 'procedural_reid'),\n"
            "      sorted(n for n in DATASET_REGISTRY._obj_map if n.startswith('Procedural')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[] []"


def test_add_slr_config_adds_the_slr_namespace_only():
    plain = get_cfg()
    cfg = fastreid_slr.add_slr_config(get_cfg())
    assert fastreid_slr.add_slr_config(cfg) is cfg  # idempotent
    assert set(cfg) - set(plain) == {"SLR"} and set(cfg.DATASETS) == set(plain.DATASETS)
    assert {"MODE", "CLUSTER", "REFINE", "SOURCE", "LOSS", "EMA"} <= set(cfg.SLR)


@pytest.mark.parametrize("module, least", [(fastreid_slr.config, 40), (procedural_reid.config, 8)])
def test_every_config_key_commented(module, least):
    """Every key sits under a comment in its config module (a comment may cover a group of
    consecutive keys, like K1 and K2)."""
    lines = [line.strip() for line in open(module.__file__)]
    keys = [i for i, line in enumerate(lines) if line.startswith("_C.") and "CN()" not in line]
    assert len(keys) >= least
    for i in keys:
        j = i - 1
        while lines[j].startswith("_C.") and "CN()" not in lines[j]:
            j -= 1
        assert lines[j].startswith("#"), f"{os.path.basename(module.__file__)} line {i + 1} has no comment: {lines[i]}"
