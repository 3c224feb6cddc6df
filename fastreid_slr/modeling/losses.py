"""The losses of SLR's two stages (paper §3.9-3.10, Eq. 5-6; MMT/ABMT).

Soft CE and the soft triplet are here; the label-smoothed CE and the batch-hard triplet are
fast-reid's own (``fastreid.modeling.losses``). All compute in float32, whatever autocast gives.
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from fastreid.modeling.losses import cross_entropy_loss, triplet_loss
from fastreid.modeling.losses.utils import euclidean_dist

from .heads import BranchOutput

_BRANCHES = ("a", "b")


def soft_target_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_k p_k log softmax(logits)_k, for target distributions p (B, K).

    The "no module (h)" ablation (supervision by the refined soft labels, Table 3) uses it as is.
    """
    return -(target_probs.float() * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def soft_cross_entropy(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Cross entropy of the student's prediction against the teacher's softmax (§3.10, MMT)."""
    return soft_target_cross_entropy(logits, F.softmax(teacher_logits.detach().float(), dim=1))


def batch_hard_indices(dist: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per anchor, the index of its farthest positive and of its nearest negative.

    The anchor counts as its own positive (an identity alone in the batch gets distance 0).
    """
    same = targets.view(-1, 1) == targets.view(1, -1)
    hardest_pos = dist.masked_fill(~same, float("-inf")).argmax(1)
    hardest_neg = dist.masked_fill(same, float("inf")).argmin(1)
    return hardest_pos, hardest_neg


def soft_triplet_loss(features: torch.Tensor, teacher_features: torch.Tensor, targets: torch.Tensor,
                      norm_feat: bool = False) -> torch.Tensor:
    """Soft triplet loss (MMT's STL, paper §3.10).

    Positives and negatives are mined batch-hard on the student's distances with the hard labels;
    the student's softmax over (d_ap, d_an) is trained towards the teacher's softmax over its own
    distances between the same three samples.
    """
    features, teacher_features = features.float(), teacher_features.detach().float()
    if norm_feat:
        features, teacher_features = F.normalize(features, dim=1), F.normalize(teacher_features, dim=1)
    dist = euclidean_dist(features, features)
    pos, neg = batch_hard_indices(dist.detach(), targets)
    rows = torch.arange(len(targets), device=dist.device)
    log_p = F.log_softmax(torch.stack([dist[rows, pos], dist[rows, neg]], dim=1), dim=1)
    teacher_dist = euclidean_dist(teacher_features, teacher_features)
    q = F.softmax(torch.stack([teacher_dist[rows, pos], teacher_dist[rows, neg]], dim=1), dim=1)
    return -(q * log_p).sum(1).mean()


def pretrain_losses(student: Sequence[BranchOutput], targets: torch.Tensor, *, ce_epsilon: float,
                    tri_margin: float) -> Dict[str, torch.Tensor]:
    """Stage 1, per branch: half of (label-smoothed CE + batch-hard triplet on pre-BN features).

    ``tri_margin`` 0 gives fast-reid's soft margin, log(1 + exp(d_ap - d_an)).
    """
    losses = {}
    for name, out in zip(_BRANCHES, student):
        losses[f"loss_ce_{name}"] = 0.5 * cross_entropy_loss(out.logits.float(), targets, ce_epsilon)
        losses[f"loss_triplet_{name}"] = 0.5 * triplet_loss(
            out.features.float(), targets, tri_margin, norm_feat=False, hard_mining=True)
    return losses


def adapt_losses(student: Sequence[BranchOutput], teacher: Sequence[BranchOutput], targets: torch.Tensor,
                 targets_soft: Optional[torch.Tensor] = None, *, ce_weight: float, soft_ce_weight: float,
                 soft_tri_weight: float, ce_epsilon: float, soft_tri_norm_feat: bool) -> Dict[str, torch.Tensor]:
    """Eq. 6, cross-branch: student A learns from teacher B and student B from teacher A (§3.10).

    Each key ends with the student branch it trains and holds half of its term, so the values sum
    to λ1·mean(CE) + λ2·mean(soft CE) + λ3·mean(soft triplet) over the two branches; a zero weight
    drops the term (Table 5). ``targets_soft`` (B, K), when given, replaces the hard labels in the
    CE term (the "no module (h)" ablation); the triplet terms always mine with ``targets``.
    """
    losses = {}
    for name, out, other in zip(_BRANCHES, student, teacher[::-1]):
        if ce_weight:
            ce = (cross_entropy_loss(out.logits.float(), targets, ce_epsilon) if targets_soft is None
                  else soft_target_cross_entropy(out.logits, targets_soft))
            losses[f"loss_ce_{name}"] = 0.5 * ce_weight * ce
        if soft_ce_weight:
            losses[f"loss_soft_ce_{name}"] = 0.5 * soft_ce_weight * soft_cross_entropy(out.logits, other.logits)
        if soft_tri_weight:
            losses[f"loss_soft_triplet_{name}"] = 0.5 * soft_tri_weight * soft_triplet_loss(
                out.features, other.features, targets, soft_tri_norm_feat)
    return losses
