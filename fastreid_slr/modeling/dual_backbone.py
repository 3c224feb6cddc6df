"""The dual-branch ResNet of ABMT / SLR (paper §3.1): one trunk, stage 4 twice, one copy deeper.

Built from fast-reid's own ``build_resnet_backbone`` (depths, IBN-a, SE, non-local blocks and
ImageNet weights all as fast-reid gives them), then: branch A = its stage 4; branch B = an
independent copy of that stage 4 (ImageNet weights included) followed by one extra residual block,
initialised as ABMT initialises its own (``_init_as_abmt``). The extra block is of the depth's own block type at stage 4's width:
``Bottleneck(2048, 512)`` for depth 50/101 (the paper's "bottleneck"), ``BasicBlock(512, 512)``
for depth 18/34, where a Bottleneck would have to squeeze 512 channels to 128. Like stage 4 in
fast-reid's IBN-a ResNet, it has no instance norm (SE when MODEL.BACKBONE.WITH_SE).

The stem is ABMT's, per variant: ABMT's plain ResNet trunk (``resnet_AB.py``) is conv1 -> bn1 ->
maxpool, with no ReLU after the stem's BN, while its IBN-a trunk (``resnet_AB_ibn.py``) keeps the
ReLU. The paper's numbers come from those trunks, so ``DualResNet`` drops the stem ReLU unless
MODEL.BACKBONE.WITH_IBN. Only this backbone does: fast-reid's ``build_resnet_backbone`` keeps it.
The ReLU has no parameters, so state-dict keys and ImageNet weights are unchanged.

The forward returns the tuple ``(map_A, map_B)``; the SLR meta-architecture detects the tuple.
"""
import copy

import torch
from torch import nn

from fastreid.modeling.backbones import BACKBONE_REGISTRY
from fastreid.modeling.backbones.resnet import Bottleneck, ResNet, build_resnet_backbone


def _init_as_abmt(module: nn.Module) -> None:
    """ABMT's initialisation of its extra block (``weights_init_kaiming`` of resnet_AB.py): convolutions
    Kaiming-normal over their fan-in, linear layers over their fan-out, BN weights drawn from
    N(1, 0.02), biases 0. (fast-reid's rule of the same name takes the convolutions' fan-out and BN
    weights of 1.)"""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
    elif isinstance(module, nn.Linear):
        nn.init.kaiming_normal_(module.weight, a=0, mode="fan_out")
    elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
    if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
        nn.init.zeros_(module.bias)


class DualResNet(nn.Module):
    """A fast-reid ``ResNet``'s modules, under their own names, and branch B (module docstring).
    ``stem_relu``: keep the ReLU after the stem's BN (``stem_act``; ABMT: only in IBN-a)."""

    def __init__(self, resnet: ResNet, bn_norm: str = "BN", with_se: bool = False, stem_relu: bool = True):
        super().__init__()
        for name, module in resnet.named_children():  # conv1, bn1, maxpool, layer1-4, NL_1-4
            if name != "relu":
                self.add_module(name, module)
        self.stem_act = resnet.relu if stem_relu else nn.Identity()
        self.non_local = {k: list(getattr(resnet, f"NL_{k}_idx")) for k in (1, 2, 3)}
        assert not resnet.NL_4_idx, "fast-reid puts no non-local block in stage 4"
        self.layer4_b = copy.deepcopy(resnet.layer4)
        block = type(resnet.layer4[-1])
        width = (resnet.layer4[-1].conv3 if block is Bottleneck else resnet.layer4[-1].conv2).out_channels
        self.extra_b = block(width, width // block.expansion, bn_norm, False, with_se)
        self.extra_b.apply(_init_as_abmt)

    def _stage(self, x: torch.Tensor, k: int) -> torch.Tensor:
        for i, block in enumerate(getattr(self, f"layer{k}")):
            x = block(x)
            if i in self.non_local[k]:
                x = getattr(self, f"NL_{k}")[self.non_local[k].index(i)](x)
        return x

    def forward(self, x: torch.Tensor):
        x = self.maxpool(self.stem_act(self.bn1(self.conv1(x))))
        for k in (1, 2, 3):
            x = self._stage(x, k)
        return self.layer4(x), self.extra_b(self.layer4_b(x))


@BACKBONE_REGISTRY.register()
def build_dual_resnet_backbone(cfg):
    """MODEL.BACKBONE.NAME: build_dual_resnet_backbone — fast-reid's ResNet from MODEL.BACKBONE.*,
    stage 4 duplicated into branch B, the stem ReLU as ABMT's (``DualResNet``)."""
    backbone = cfg.MODEL.BACKBONE
    return DualResNet(build_resnet_backbone(cfg), backbone.NORM, backbone.WITH_SE, stem_relu=backbone.WITH_IBN)
