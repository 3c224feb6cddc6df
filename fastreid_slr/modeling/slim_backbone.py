"""A slim dual-branch CNN for CPU runs: the paper's asymmetric branches at a few MFLOPs per image.

Sized for small inputs (the demo's 64x32): a 3x3 stem and three stages of fast-reid's
``BasicBlock`` (stride 2, 2, then ``MODEL.BACKBONE.LAST_STRIDE``), so a 64x32 image is an 8x4
map before the last stage (4x2 after it at LAST_STRIDE 2). As in the dual ResNet, the shared trunk
is the stem and the first two stages; branch A is the last stage, branch B an independent copy of
it followed by one extra ``Bottleneck``. The forward returns ``(map_A, map_B)``.

Why not OSNet-x0.25 (the previous demo backbone): on a CPU a step costs per layer more than per
FLOP, and OSNet's many small depthwise layers and gates made it several times slower per step at
the same batch and input size (``benchmarks/backbone_speed.py``). There are no ImageNet weights:
it trains from scratch.
"""
import copy
from typing import Sequence

from torch import nn

from fastreid.config import configurable
from fastreid.layers import get_norm
from fastreid.layers.weight_init import weights_init_kaiming
from fastreid.modeling.backbones import BACKBONE_REGISTRY
from fastreid.modeling.backbones.resnet import BasicBlock, Bottleneck

# MODEL.BACKBONE.DEPTH -> channels of (stem, stage 1, stage 2, last stage).
WIDTHS = {
    "x0_5": (8, 16, 32, 64),
    "x0_75": (12, 24, 48, 96),
    "x1_0": (16, 32, 64, 128),
    "x2_0": (32, 64, 128, 256),
}


def _block(inplanes: int, planes: int, stride: int, bn_norm: str) -> BasicBlock:
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                   get_norm(bn_norm, planes))
    return BasicBlock(inplanes, planes, bn_norm, stride=stride, downsample=downsample)


class SlimDualNet(nn.Module):
    """Stem + two shared stages, then the last stage twice (branch B one block deeper)."""

    @configurable
    def __init__(self, *, widths: Sequence[int], last_stride: int = 1, bn_norm: str = "BN"):
        super().__init__()
        stem, c1, c2, c3 = widths
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False),
                                  get_norm(bn_norm, stem), nn.ReLU(inplace=True))
        self.stage1 = _block(stem, c1, 2, bn_norm)
        self.stage2 = _block(c1, c2, 2, bn_norm)
        self.stage3 = _block(c2, c3, last_stride, bn_norm)
        self.stage3_b = copy.deepcopy(self.stage3)
        self.extra_b = Bottleneck(c3, c3 // Bottleneck.expansion, bn_norm)
        self.apply(weights_init_kaiming)

    @classmethod
    def from_config(cls, cfg):
        bb = cfg.MODEL.BACKBONE
        if bb.DEPTH not in WIDTHS:
            raise ValueError(f"MODEL.BACKBONE.DEPTH {bb.DEPTH!r} is not a width of "
                             f"build_slim_dual_backbone: one of {sorted(WIDTHS)}")
        if bb.PRETRAIN:
            raise ValueError("build_slim_dual_backbone has no ImageNet weights: set "
                             "MODEL.BACKBONE.PRETRAIN False")
        return {"widths": WIDTHS[bb.DEPTH], "last_stride": bb.LAST_STRIDE, "bn_norm": bb.NORM}

    def forward(self, x):
        x = self.stage2(self.stage1(self.stem(x)))
        return self.stage3(x), self.extra_b(self.stage3_b(x))


@BACKBONE_REGISTRY.register()
def build_slim_dual_backbone(cfg):
    """MODEL.BACKBONE.NAME: build_slim_dual_backbone — a :class:`SlimDualNet` (DEPTH names the width)."""
    return SlimDualNet(cfg)
