"""SLR's model: the dual-branch ResNet backbone and the SLR meta-architecture.

Importing this package registers ``build_dual_resnet_backbone`` (BACKBONE_REGISTRY) and ``SLR``
(META_ARCH_REGISTRY).
"""
from .dual_backbone import DualResNet, build_dual_resnet_backbone
from .ema import TeacherEMA, momentum_at
from .heads import BranchHead, BranchOutput, DynamicClassifier, TwoBranchNet
from .slr_arch import SLR

__all__ = [
    "BranchHead", "BranchOutput", "DualResNet", "DynamicClassifier", "SLR", "TeacherEMA", "TwoBranchNet",
    "build_dual_resnet_backbone", "momentum_at",
]
