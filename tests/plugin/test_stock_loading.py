"""A trained SLR model loads the stock fast-reid way (docs/using_the_model.md): every shipped config
with ``get_cfg()`` and the documented config functions, and a checkpoint through fast-reid's own
``DefaultPredictor`` / ``Checkpointer`` without a warning, answering as the model it was saved from."""
import contextlib
import glob
import logging
import os

import pytest
import torch
from fastreid.config import get_cfg
from fastreid.engine import DefaultPredictor
from fastreid.modeling import build_model
from fastreid.utils.checkpoint import Checkpointer

from fastreid_slr import add_run_config, add_slr_config
from procedural_reid import add_procedural_config
from tiny import REPO
from user_kit import CLASSES, tiny_demo_cfg, trained_checkpoint

SHIPPED = sorted(glob.glob(os.path.join(REPO, "configs", "*.yml")) +
                 glob.glob(os.path.join(REPO, "configs", "*", "*.yml")))


def test_the_shipped_configs_are_all_found():
    folders = {os.path.relpath(os.path.dirname(p), REPO) for p in SHIPPED}
    assert folders == {"configs", os.path.join("configs", "SLR"), os.path.join("configs", "Demo")}
    assert len(SHIPPED) >= 16


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: os.path.relpath(p, REPO))
def test_every_shipped_config_loads_with_the_documented_functions(path):
    """``add_slr_config`` + ``add_run_config`` for every config, and ``add_procedural_config`` for
    the demo's (configs/Demo/), which name procedural datasets: nothing else."""
    cfg = get_cfg()
    add_slr_config(cfg)
    add_run_config(cfg)
    if os.path.basename(os.path.dirname(path)) == "Demo":
        add_procedural_config(cfg)
    cfg.merge_from_file(path)  # an unknown key raises KeyError


@contextlib.contextmanager
def _checkpointer_log(caplog):
    """fast-reid's checkpointer messages into ``caplog`` alone, once each, whether or not fast-reid's
    own logger set-up (run by other tests) stopped their propagation."""
    caplog.clear()
    logger = logging.getLogger("fastreid.utils.checkpoint")
    logger.addHandler(caplog.handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        with caplog.at_level(logging.DEBUG, logger=logger.name):
            yield
    finally:
        logger.propagate = propagate
        logger.removeHandler(caplog.handler)


def _complaints(messages):
    return [m for m in messages if "Skip loading" in m or "not found in the checkpoint" in m or "not used" in m]


@pytest.mark.parametrize("mode", ["adapt", "pretrain"])
def test_default_predictor_loads_an_slr_checkpoint_whole(tmp_path, caplog, mode):
    """Stage 2's checkpoint (teacher answers) and stage 1's (its student becomes the teacher), into
    the demo config's model, as a new user loads it."""
    path = str(tmp_path / "model_final.pth")
    saved = trained_checkpoint(tiny_demo_cfg("SLR.MODE", mode), path)
    images = torch.rand(5, 3, 32, 16, generator=torch.Generator().manual_seed(1)) * 255
    cfg = tiny_demo_cfg("MODEL.WEIGHTS", path)

    with _checkpointer_log(caplog):
        predictor = DefaultPredictor(cfg)
    assert any("Loading checkpoint from" in m for m in caplog.messages)  # the checkpointer is heard
    assert _complaints(caplog.messages) == []
    assert predictor.model.num_classes == CLASSES
    with torch.no_grad():
        torch.testing.assert_close(predictor(images), saved(images), rtol=0, atol=1e-6)

    # fast-reid's Checkpointer into a model built without MODEL.WEIGHTS cannot know the size: it
    # skips the classifiers (what every load printed before), which SLRCheckpointer avoids
    cfg.MODEL.WEIGHTS = ""
    with _checkpointer_log(caplog):
        Checkpointer(build_model(cfg)).load(path)
    assert sum("Skip loading" in m for m in caplog.messages) == (4 if mode == "adapt" else 2)
