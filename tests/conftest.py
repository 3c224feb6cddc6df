"""Test-wide set-up: a stable dataset cache, and slow / GPU tests skipped unless asked for."""
import os
import random

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# fast-reid reads FASTREID_DATASETS once, on import: set it before anything imports fastreid.
os.environ.setdefault("FASTREID_DATASETS", os.path.join(REPO, ".cache", "datasets"))
os.makedirs(os.environ["FASTREID_DATASETS"], exist_ok=True)

import torch  # noqa: E402

import fastreid_slr  # noqa: E402,F401  (compat patches before any test imports fast-reid)
import procedural_reid  # noqa: E402,F401  (the tests' data: ProceduralA / ProceduralB)

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
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: run with --run-slow"))
        if "gpu" in item.keywords and not (run_slow and torch.cuda.is_available()):
            item.add_marker(pytest.mark.skip(reason="needs CUDA and --run-slow"))


def _seed_everything():
    """fast-reid's samplers draw their seeds from numpy; augmentations use random and torch."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state, whichever tests ran before it."""
    _seed_everything()


@pytest.fixture(autouse=True)
def procedural_spec():
    """The procedural datasets' default spec (which a config's set-up replaces) is the same for
    every test, whichever tests ran before it."""
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
