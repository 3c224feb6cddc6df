"""fast-reid's own Baseline trains on the procedural data through fast-reid's DefaultTrainer
(the plugin adds, it never replaces): the loss falls, and the domain gap shows."""
import os
import random

import numpy as np
import torch

import fastreid_slr  # noqa: F401  (compat first)
from fastreid.config import get_cfg
from fastreid.engine import DefaultTrainer
from procedural_reid import add_procedural_config, apply_procedural_config
from tiny import REPO


def test_baseline_learns_on_a_and_loses_accuracy_on_b(tmp_path):
    cfg = add_procedural_config(get_cfg())
    cfg.merge_from_file(os.path.join(REPO, "configs", "Demo", "baseline-procedural.yml"))
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATASETS.PROCEDURAL.IMAGES_PER_CAMERA = 6  # as the demo: ~20 images per identity
    cfg.SOLVER.MAX_EPOCH, cfg.SOLVER.STEPS = 6, [4]  # 6 of the config's 16 epochs show the gap already
    cfg.SOLVER.CHECKPOINT_PERIOD = cfg.TEST.EVAL_PERIOD = 6
    cfg.OUTPUT_DIR = str(tmp_path)
    apply_procedural_config(cfg)
    random.seed(0)
    np.random.seed(0)  # fast-reid's identity sampler draws its seed from numpy
    torch.manual_seed(0)

    trainer = DefaultTrainer(cfg)
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    results = trainer.train()

    changed = sum(not torch.equal(before[k], v.detach()) for k, v in trainer.model.named_parameters())
    assert changed > 0.9 * len(before)
    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10
    source, target = results["ProceduralA"]["mAP"], results["ProceduralB"]["mAP"]
    assert source > target + 5, (source, target)  # trained on A: clearly worse on B (55 vs 42 in 6 epochs)
    assert os.path.isfile(tmp_path / "model_final.pth")
