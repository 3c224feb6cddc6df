"""The dual-branch ResNet of ABMT / SLR (paper §3.1): one trunk, stage 4 twice, one copy deeper.

Shared trunk = stem + stages 1-3 (fast-reid's ``ResNet``, IBN-a and non-local blocks included).
Branch A = stage 4. Branch B = an independent copy of stage 4 followed by one extra residual block,
Kaiming-initialised. The extra block is of the depth's own block type at stage 4's width:
``Bottleneck(2048, 512)`` for depth 50/101 (the paper's "bottleneck"), ``BasicBlock(512, 512)``
for depth 18/34, where a Bottleneck would have to squeeze 512 channels to 128. Like stage 4 in
fast-reid's IBN-a ResNet, it has no instance norm (SE when MODEL.BACKBONE.WITH_SE).

The forward returns the tuple ``(map_A, map_B)``; the SLR meta-architecture detects the tuple.
"""
import copy
import logging
import os
from typing import Dict, Optional

import torch

from fastreid.config import configurable
from fastreid.layers.weight_init import weights_init_kaiming
from fastreid.modeling.backbones import BACKBONE_REGISTRY
from fastreid.modeling.backbones.resnet import BasicBlock, Bottleneck, ResNet, model_urls
from fastreid.utils.checkpoint import get_missing_parameters_message, get_unexpected_parameters_message

from ..compat import local_pretrained_weights

logger = logging.getLogger(__name__)

# MODEL.BACKBONE.DEPTH -> (block, blocks per stage, non-local blocks per stage), as fast-reid's ResNet.
_DEPTHS = {
    "18x": (BasicBlock, [2, 2, 2, 2], [0, 0, 0, 0]),
    "34x": (BasicBlock, [3, 4, 6, 3], [0, 0, 0, 0]),
    "50x": (Bottleneck, [3, 4, 6, 3], [0, 2, 3, 0]),
    "101x": (Bottleneck, [3, 4, 23, 3], [0, 2, 9, 0]),
}


class DualResNet(ResNet):
    """fast-reid's ResNet with stage 4 duplicated into two branches (see the module docstring)."""

    @configurable
    def __init__(self, *, depth: str, last_stride: int = 1, bn_norm: str = "BN", with_ibn: bool = False,
                 with_se: bool = False, with_nl: bool = False,
                 pretrained_state: Optional[Dict[str, torch.Tensor]] = None):
        """
        Args:
            depth: "18x", "34x", "50x" or "101x".
            pretrained_state: ImageNet weights of the single-branch ResNet; loaded into the trunk
                and into both copies of stage 4 (the extra block keeps its Kaiming init).
        """
        if depth not in _DEPTHS:
            raise ValueError(f"MODEL.BACKBONE.DEPTH {depth!r} is not one of {sorted(_DEPTHS)}")
        block, layers, nl_layers = _DEPTHS[depth]
        super().__init__(last_stride, bn_norm, with_ibn, with_se, with_nl, block, layers, nl_layers)
        assert not self.NL_4_idx, "fast-reid puts no non-local block in stage 4"
        self.layer4_b = copy.deepcopy(self.layer4)
        width = self.inplanes  # stage 4's output channels
        self.extra_b = block(width, width // block.expansion, bn_norm, False, with_se)
        self.extra_b.apply(weights_init_kaiming)
        if pretrained_state is not None:
            self._load_imagenet(pretrained_state)

    @classmethod
    def from_config(cls, cfg):
        bb = cfg.MODEL.BACKBONE
        return {
            "depth": bb.DEPTH,
            "last_stride": bb.LAST_STRIDE,
            "bn_norm": bb.NORM,
            "with_ibn": bb.WITH_IBN,
            "with_se": bb.WITH_SE,
            "with_nl": bb.WITH_NL,
            "pretrained_state": imagenet_state(bb.PRETRAIN_PATH, bb.DEPTH, bb.WITH_IBN, bb.WITH_SE)
            if bb.PRETRAIN else None,
        }

    def _load_imagenet(self, state: Dict[str, torch.Tensor]):
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        state.update({"layer4_b." + k[len("layer4."):]: v for k, v in state.items() if k.startswith("layer4.")})
        incompatible = self.load_state_dict(state, strict=False)
        if incompatible.missing_keys:
            logger.info(get_missing_parameters_message(incompatible.missing_keys))
        if incompatible.unexpected_keys:
            logger.info(get_unexpected_parameters_message(incompatible.unexpected_keys))

    def _stage(self, x: torch.Tensor, k: int) -> torch.Tensor:
        nl_idx = getattr(self, f"NL_{k}_idx")
        for i, blk in enumerate(getattr(self, f"layer{k}")):
            x = blk(x)
            if i in nl_idx:
                x = getattr(self, f"NL_{k}")[nl_idx.index(i)](x)
        return x

    def forward(self, x: torch.Tensor):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for k in (1, 2, 3):
            x = self._stage(x, k)
        return self.layer4(x), self.extra_b(self.layer4_b(x))


def imagenet_state(path: str, depth: str, with_ibn: bool, with_se: bool) -> Dict[str, torch.Tensor]:
    """ImageNet weights from ``path``, or (empty path) from where fast-reid would cache its download."""
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"MODEL.BACKBONE.PRETRAIN_PATH {path!r} does not exist: point it at "
                                    f"the ImageNet weights, or set MODEL.BACKBONE.PRETRAIN False.")
        logger.info(f"Loading pretrained model from {path}")
        return torch.load(path, map_location="cpu", weights_only=True)
    key = ("se_" if with_se else "") + ("ibn_" if with_ibn else "") + depth
    if key not in model_urls:
        raise ValueError(f"fast-reid publishes no ImageNet weights for {key!r}; "
                         f"set MODEL.BACKBONE.PRETRAIN_PATH or MODEL.BACKBONE.PRETRAIN False.")
    return local_pretrained_weights(model_urls[key])


@BACKBONE_REGISTRY.register()
def build_dual_resnet_backbone(cfg):
    """MODEL.BACKBONE.NAME: build_dual_resnet_backbone — a :class:`DualResNet` from MODEL.BACKBONE.*."""
    return DualResNet(cfg)
