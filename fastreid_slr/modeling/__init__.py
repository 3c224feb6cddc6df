"""SLR's model: the dual-branch backbones and the SLR meta-architecture.

Importing this package registers ``build_dual_resnet_backbone`` and ``build_slim_dual_backbone``
(BACKBONE_REGISTRY) and ``SLR`` (META_ARCH_REGISTRY).
"""
from .dual_backbone import DualResNet, build_dual_resnet_backbone
from .ema import TeacherEMA, momentum_at
from .heads import BranchHead, BranchOutput, DynamicClassifier, TwoBranchNet
from .slim_backbone import SlimDualNet, build_slim_dual_backbone
from .slr_arch import SLR

__all__ = [
    "BranchHead", "BranchOutput", "DualResNet", "DynamicClassifier", "SLR", "SlimDualNet", "TeacherEMA",
    "TwoBranchNet", "build_dual_resnet_backbone", "build_slim_dual_backbone", "momentum_at",
]
