"""Every backbone fast-reid (and the plugin) registers builds inside SLR, takes a CPU training step
and gives evaluation features: "any fast-reid backbone works" is a promise the README makes (docs/extending.md, "Backbones")."""
import pytest
import torch

import fastreid_slr  # noqa: F401  (registers the plugin's backbones, patches fast-reid's)
from fastreid.config import get_cfg
from fastreid.modeling import build_model
from fastreid.modeling.backbones import BACKBONE_REGISTRY

from fastreid_slr import add_slr_config
from tiny import random_batch

# The smallest depth of each, at 64x32 (ViT: 8x8 patches, stride 8).
BACKBONES = {
    "build_dual_resnet_backbone": {"DEPTH": "18x"},
    "build_slim_dual_backbone": {"DEPTH": "x0_5"},
    "build_resnet_backbone": {"DEPTH": "18x"},
    "build_resnext_backbone": {"DEPTH": "50x"},
    "build_resnest_backbone": {"DEPTH": "50x"},
    "build_osnet_backbone": {"DEPTH": "x0_25"},
    "build_mobilenetv2_backbone": {"DEPTH": "0.35x"},
    "build_mobilenetv3_backbone": {"DEPTH": "Small"},
    "build_shufflenetv2_backbone": {"DEPTH": "0.5x"},
    "build_repvgg_backbone": {"DEPTH": "A0"},
    "build_regnet_backbone": {"DEPTH": "200x"},
    "build_effnet_backbone": {"DEPTH": "b0"},
    "build_vit_backbone": {"DEPTH": "small", "STRIDE_SIZE": [8, 8]},
}


def test_every_registered_backbone_is_covered():
    assert set(BACKBONE_REGISTRY._obj_map) == set(BACKBONES)


def _slr_cfg(name, options):
    cfg = add_slr_config(get_cfg())
    cfg.MODEL.META_ARCHITECTURE = "SLR"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = name
    cfg.MODEL.BACKBONE.PRETRAIN = False
    for key, value in options.items():
        cfg.MODEL.BACKBONE[key] = value
    cfg.MODEL.HEADS.NUM_CLASSES = 4
    cfg.INPUT.SIZE_TRAIN = cfg.INPUT.SIZE_TEST = [64, 32]
    return cfg


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_slr_trains_and_evaluates_on_the_backbone(name):
    torch.manual_seed(0)
    model = build_model(_slr_cfg(name, BACKBONES[name]))
    batch = random_batch(num_ids=4, per_id=2, size=(64, 32))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    before = {n: p.detach().clone() for n, p in model.student.named_parameters()}
    loss = sum(model(batch).values())
    loss.backward()
    optimizer.step()
    model.update_teacher()
    assert torch.isfinite(loss)
    changed = [n for n, p in model.student.named_parameters() if not torch.equal(before[n], p)]
    assert len(changed) > 0.5 * len(before), f"only {len(changed)} of {len(before)} student tensors moved"

    model.eval()
    with torch.no_grad():
        features = model({"images": batch["images"]})
    dims = sum(head.bnneck.num_features for head in model.teacher.heads)
    assert features.shape == (8, dims) and torch.isfinite(features).all()
    torch.testing.assert_close(features.norm(dim=1), torch.ones(8))  # the joint L2 norm of both branches
