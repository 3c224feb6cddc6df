"""Test-wide set-up: seeded tests, slow / GPU tests skipped unless asked for, and, where torch is
installed, the plugin's: a stable dataset cache, fast-reid's fixes applied first, one intra-op
thread, and the tiny stage 1 the stage-2 tests start from.

The layout: ``tests/engine`` tests ``slr_refine`` alone and runs where torch and fast-reid are not
installed (``make test`` runs it in such a venv, proving the engine framework-free); ``tests/plugin``
holds the plugin's unit tests; ``tests/integration`` whole runs (training end to end, DDP, faults,
a host project, ``make gpu-check``'s tiny mode).
"""
import os
import random

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    import torch
except ImportError:  # the engine's own venv: no torch, no fast-reid, no plugin
    torch = None

if torch is not None:
    # fast-reid reads FASTREID_DATASETS once, on import: set it before anything imports fastreid.
    os.environ.setdefault("FASTREID_DATASETS", os.path.join(REPO, ".cache", "datasets"))
    os.makedirs(os.environ["FASTREID_DATASETS"], exist_ok=True)
    import fastreid_slr  # noqa: F401  (compat patches before any test imports fast-reid)
    import procedural_reid  # (the tests' data: ProceduralA / ProceduralB)

    # One intra-op thread: tiny models gain little from two, and two threads sharing a core with
    # anything else (a loader worker, another process) spin and run many times slower.
    torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow or gpu")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes of CPU; skipped unless --run-slow")
    config.addinivalue_line("markers", "gpu: needs CUDA; skipped unless --run-slow and CUDA exists")


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("--run-slow")
    cuda = torch is not None and torch.cuda.is_available()
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: run with --run-slow"))
        if "gpu" in item.keywords and not (run_slow and cuda):
            item.add_marker(pytest.mark.skip(reason="needs CUDA and --run-slow"))


def _seed_everything():
    """fast-reid's samplers draw their seeds from numpy; augmentations use random and torch."""
    random.seed(0)
    np.random.seed(0)
    if torch is not None:
        torch.manual_seed(0)


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state, whichever tests ran before it."""
    _seed_everything()


@pytest.fixture(autouse=True)
def procedural_spec():
    """The procedural datasets' default spec (which a config's set-up replaces) is the same for
    every test, whichever tests ran before it."""
    if torch is None:
        yield
        return
    spec = procedural_reid.get_default_spec()
    yield
    procedural_reid.set_default_spec(spec)


@pytest.fixture(scope="session")
def source_weights(tmp_path_factory):
    """Stage 1 on the tiny procedural source, once per session; stage-2 tests start from it."""
    from fastreid_slr.engine import ensure_source_weights
    from tiny import tiny_slr_cfg

    cfg = tiny_slr_cfg(tmp_path_factory.mktemp("unused"), tmp_path_factory.mktemp("source"))
    _seed_everything()  # so that the tests' first clustering is the same on every run
    return ensure_source_weights(cfg)
