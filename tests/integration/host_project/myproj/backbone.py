"""myproj's backbone: MYPROJ.FOO stride-2 conv blocks, MODEL.BACKBONE.FEAT_DIM channels out."""
from torch import nn

from fastreid.modeling.backbones import BACKBONE_REGISTRY


@BACKBONE_REGISTRY.register()
def build_myproj_backbone(cfg):
    blocks, channels = [], 3
    for i in range(cfg.MYPROJ.FOO):
        out = cfg.MODEL.BACKBONE.FEAT_DIM if i == cfg.MYPROJ.FOO - 1 else 16 * 2 ** i
        blocks.append(nn.Sequential(nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
                                    nn.BatchNorm2d(out), nn.ReLU(inplace=True)))
        channels = out
    return nn.Sequential(*blocks)
