"""One branch's head (pooling -> BNNeck -> dynamic classifier) and the two-branch network."""
from typing import List, NamedTuple, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from fastreid.layers import get_norm, pooling
from fastreid.layers.weight_init import weights_init_kaiming


class DynamicClassifier(nn.Module):
    """Bias-free linear classifier whose class count changes every epoch (paper §3.8-3.10).

    Its weight is an ordinary ``weight`` parameter, sized from a checkpoint before loading (by the
    SLR model from ``MODEL.WEIGHTS`` when it is built, and by ``SLRCheckpointer``). A resize makes a
    new Parameter: an optimiser built before it must be rebuilt.
    """

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.normal_(self.weight, std=0.01)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)

    def reset(self, weight: torch.Tensor):
        """Replace the weight by ``weight`` (K, in_features): a new Parameter, same requires_grad."""
        assert weight.dim() == 2 and weight.shape[1] == self.weight.shape[1], weight.shape
        self.weight = nn.Parameter(weight.detach().to(self.weight).clone(),
                                   requires_grad=self.weight.requires_grad)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, num_classes={self.num_classes}, bias=False"


class BranchOutput(NamedTuple):
    features: torch.Tensor  # pooled, before the BNNeck (triplet losses)
    bn_features: torch.Tensor  # after the BNNeck (classifier input, inference feature)
    logits: torch.Tensor


class BranchHead(nn.Module):
    """Pooling (a fast-reid pooling layer, by name) -> BNNeck with frozen bias -> classifier."""

    def __init__(self, feat_dim: int, num_classes: int, pool_type: str, norm_type: str = "BN"):
        super().__init__()
        if not hasattr(pooling, pool_type):
            raise ValueError(f"pooling {pool_type!r} is not one of fastreid.layers.pooling {pooling.__all__}")
        self.pool = getattr(pooling, pool_type)()
        self.bnneck = get_norm(norm_type, feat_dim, bias_freeze=True)
        self.bnneck.apply(weights_init_kaiming)
        self.classifier = DynamicClassifier(feat_dim, num_classes)

    def embed(self, feature_map: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(pooled, bn) features, without the classifier: all that inference needs."""
        pooled = self.pool(feature_map)
        return pooled[..., 0, 0], self.bnneck(pooled)[..., 0, 0]

    def forward(self, feature_map: torch.Tensor) -> BranchOutput:
        pooled, bn = self.embed(feature_map)
        return BranchOutput(pooled, bn, self.classifier(bn))


class TwoBranchNet(nn.Module):
    """A backbone and two branch heads: the student, or (a copy) the teacher.

    A dual backbone (one returning a tuple of two maps) feeds branch A and branch B with its own
    stage 4; any single-output fast-reid backbone feeds the same map to both heads, so the branches
    differ only by their pooling (and BNNeck/classifier), not by any convolutional layer.
    """

    def __init__(self, backbone: nn.Module, heads: Sequence[BranchHead]):
        super().__init__()
        assert len(heads) == 2, "SLR has exactly two branches"
        self.backbone = backbone
        self.heads = nn.ModuleList(heads)

    def forward(self, images: torch.Tensor) -> List[BranchOutput]:
        return [head(m) for head, m in zip(self.heads, self._maps(images))]

    def embedding(self, images: torch.Tensor) -> torch.Tensor:
        """``normalize(cat(bn_A, bn_B))`` (B, dim_A + dim_B): the inference feature (§3.3), no classifier."""
        bn = [head.embed(m)[1] for head, m in zip(self.heads, self._maps(images))]
        return F.normalize(torch.cat(bn, dim=1), dim=1)

    def _maps(self, images: torch.Tensor):
        maps = self.backbone(images)
        return (maps, maps) if isinstance(maps, torch.Tensor) else maps


def feature_dims(backbone: nn.Module, image_size: Sequence[int]) -> List[int]:
    """Channels of the map(s) the backbone feeds to branches A and B, by one probing forward.

    Works for any fast-reid backbone, whatever MODEL.BACKBONE.FEAT_DIM says.
    """
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            maps = backbone(torch.zeros(1, 3, *image_size))
    finally:
        backbone.train(was_training)
    if isinstance(maps, torch.Tensor):
        maps = (maps, maps)
    return [m.shape[1] for m in maps]
