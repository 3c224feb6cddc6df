"""The slim dual-branch backbone: built by name from the config, two maps of the right shape from
independent branches, a clear error for a bad config, and it learns inside the SLR model."""
import pytest
import torch

import fastreid_slr  # noqa: F401  (compat first; registers build_slim_dual_backbone)
from fastreid.config import get_cfg
from fastreid.modeling.backbones import build_backbone
from fastreid.modeling.backbones.resnet import Bottleneck
from fastreid.modeling.meta_arch import build_model
from fastreid_slr import add_slr_config
from fastreid_slr.modeling.slim_backbone import WIDTHS

from tiny import random_batch


def slim_cfg(depth="x1_0", **backbone):
    cfg = add_slr_config(get_cfg())
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "build_slim_dual_backbone"
    cfg.MODEL.BACKBONE.DEPTH = depth
    cfg.MODEL.BACKBONE.PRETRAIN = False
    for key, value in backbone.items():
        cfg.MODEL.BACKBONE[key] = value
    return cfg


@pytest.mark.parametrize("depth", sorted(WIDTHS))
@pytest.mark.parametrize("last_stride, size, grid", [(2, (64, 32), (4, 2)), (1, (64, 32), (8, 4)),
                                                     (2, (32, 16), (2, 1))])
def test_two_maps_from_the_config(depth, last_stride, size, grid):
    net = build_backbone(slim_cfg(depth, LAST_STRIDE=last_stride)).eval()
    with torch.no_grad():
        a, b = net(torch.randn(2, 3, *size))
    assert a.shape == b.shape == (2, WIDTHS[depth][-1], *grid)
    assert not torch.allclose(a, b)


def test_branch_b_is_an_independent_copy_plus_a_bottleneck():
    net = build_backbone(slim_cfg())
    shared = {id(p) for p in net.stage3.parameters()} & {id(p) for p in net.stage3_b.parameters()}
    assert not shared
    assert isinstance(net.extra_b, Bottleneck) and net.extra_b.downsample is None
    # Branch B's copy of the last stage is the size of branch A's; the extra block sits on top.
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(net.stage3_b) == count(net.stage3)


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="x0_5"):
        build_backbone(slim_cfg("50x"))
    with pytest.raises(ValueError, match="PRETRAIN False"):
        build_backbone(slim_cfg(PRETRAIN=True))


def test_trains_inside_the_slr_model():
    """Stage-1 mode on one fixed batch: every backbone parameter moves and the loss falls."""
    cfg = slim_cfg()
    cfg.MODEL.META_ARCHITECTURE = "SLR"
    cfg.SLR.MODE = "pretrain"
    cfg.MODEL.HEADS.NUM_CLASSES = 4
    cfg.INPUT.SIZE_TRAIN = [64, 32]
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = random_batch(num_ids=4, per_id=4)
    before = {k: v.clone() for k, v in model.student.backbone.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = sum(model(batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    after = model.student.backbone.state_dict()
    unchanged = [k for k, v in before.items() if v.is_floating_point() and torch.equal(v, after[k])]
    assert not unchanged, unchanged
