"""The losses of SLR's two stages that fast-reid lacks (paper §3.9-3.10, Eq. 5-6; MMT/ABMT).

Hard-label CE with label smoothing and the batch-hard triplet are fast-reid's own
(``fastreid.modeling.losses``). All losses compute in float32, whatever autocast gives them.
"""
from typing import Tuple

import torch
import torch.nn.functional as F

from fastreid.modeling.losses.utils import euclidean_dist


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
