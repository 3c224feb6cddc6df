"""SLR's losses against hand-computed values on tiny examples (plain Python math as the reference)."""
import math

import pytest
import torch

import fastreid_slr  # noqa: F401  (compat first)
from fastreid_slr.modeling.heads import BranchOutput
from fastreid_slr.modeling.losses import (adapt_losses, pretrain_losses, soft_cross_entropy,
                                          soft_target_cross_entropy, soft_triplet_loss)


def log_softmax(xs):
    lse = math.log(sum(math.exp(x) for x in xs))
    return [x - lse for x in xs]


def softmax(xs):
    return [math.exp(v) for v in log_softmax(xs)]


def line(xs):
    """1-D points embedded in 2-D, so Euclidean distances are |x_i - x_j|."""
    return torch.tensor([[x, 0.0] for x in xs])


LABELS = torch.tensor([0, 0, 1, 1])
# Student points 0, 1, 3, 6: per anchor, (farthest positive, nearest negative) and their distances.
STUDENT = [0.0, 1.0, 3.0, 6.0]
MINED = {0: (1, 2), 1: (0, 2), 2: (3, 1), 3: (2, 1)}
TEACHER = [0.0, 2.0, 3.0, 4.0]


def expected_soft_triplet(student, teacher):
    total = 0.0
    for i, (p, n) in MINED.items():
        log_p = log_softmax([abs(student[i] - student[p]), abs(student[i] - student[n])])
        q = softmax([abs(teacher[i] - teacher[p]), abs(teacher[i] - teacher[n])])
        total -= q[0] * log_p[0] + q[1] * log_p[1]
    return total / len(MINED)


def test_soft_cross_entropy_matches_hand_computation():
    s, t = [1.0, 2.0, 0.0], [0.5, -1.0, 2.0]
    ls, q = log_softmax(s), softmax(t)
    expected = -sum(qk * lk for qk, lk in zip(q, ls))
    got = soft_cross_entropy(torch.tensor([s, s]), torch.tensor([t, t]))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_soft_target_cross_entropy_uses_the_distribution_as_given():
    s = [1.0, 2.0, 0.0]
    y = [0.75, 0.25, 0.0]  # e.g. α=0.5 · onehot(0) + 0.5 · projected [0.5, 0.5, 0]
    ls = log_softmax(s)
    expected = -(0.75 * ls[0] + 0.25 * ls[1])
    assert soft_target_cross_entropy(torch.tensor([s]), torch.tensor([y])).item() == pytest.approx(expected, rel=1e-6)


def test_soft_triplet_mines_on_the_student_and_targets_the_teacher():
    got = soft_triplet_loss(line(STUDENT), line(TEACHER), LABELS)
    assert got.item() == pytest.approx(expected_soft_triplet(STUDENT, TEACHER), rel=1e-5)


def test_soft_triplet_gradient_reaches_only_the_student():
    s = line(STUDENT).requires_grad_()
    t = line(TEACHER).requires_grad_()
    soft_triplet_loss(s, t, LABELS).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def _adapt(student, teacher, targets_soft=None, ce=0.5, soft_ce=0.5, soft_tri=1.0):
    return adapt_losses(student, teacher, LABELS, targets_soft, ce_weight=ce, soft_ce_weight=soft_ce,
                        soft_tri_weight=soft_tri, ce_epsilon=0.1, soft_tri_norm_feat=False)


def _branch(points, logits):
    feats = line(points)
    return BranchOutput(feats, feats, torch.tensor(logits))


LOGITS_A = [[2.0, 0.0], [1.0, 0.5], [0.0, 1.0], [-1.0, 2.0]]
LOGITS_B = [[0.5, 0.0], [1.5, -0.5], [0.2, 0.1], [0.0, 3.0]]
LOGITS_TA = [[1.0, 1.0], [2.0, 0.0], [0.0, 0.5], [0.3, 0.3]]
LOGITS_TB = [[0.0, 2.0], [1.0, 0.0], [-1.0, 1.0], [0.5, 1.5]]
TEACHER_A = [0.0, 0.5, 2.0, 2.5]


def expected_smoothed_ce(logits, labels, eps=0.1):
    """fast-reid's label smoothing: 1-eps on the label, eps/(K-1) on every other class."""
    total = 0.0
    for row, y in zip(logits, labels):
        ls = log_softmax(row)
        k = len(row)
        total -= sum(((1 - eps) if c == y else eps / (k - 1)) * ls[c] for c in range(k))
    return total / len(logits)


def expected_soft_ce(student, teacher):
    return sum(-sum(q * l for q, l in zip(softmax(t), log_softmax(s))) for s, t in zip(student, teacher)) / len(student)


def test_adapt_losses_are_eq6_cross_branch():
    student = [_branch(STUDENT, LOGITS_A), _branch([0.0, 2.0, 5.0, 6.0], LOGITS_B)]
    teacher = [_branch(TEACHER_A, LOGITS_TA), _branch(TEACHER, LOGITS_TB)]
    labels = LABELS.tolist()
    losses = _adapt(student, teacher, ce=0.5, soft_ce=0.25, soft_tri=2.0)

    assert losses["loss_ce_a"].item() == pytest.approx(0.5 * 0.5 * expected_smoothed_ce(LOGITS_A, labels), rel=1e-5)
    assert losses["loss_ce_b"].item() == pytest.approx(0.5 * 0.5 * expected_smoothed_ce(LOGITS_B, labels), rel=1e-5)
    # student A <- teacher B, student B <- teacher A
    assert losses["loss_soft_ce_a"].item() == pytest.approx(0.5 * 0.25 * expected_soft_ce(LOGITS_A, LOGITS_TB), rel=1e-5)
    assert losses["loss_soft_ce_b"].item() == pytest.approx(0.5 * 0.25 * expected_soft_ce(LOGITS_B, LOGITS_TA), rel=1e-5)
    assert losses["loss_soft_triplet_a"].item() == pytest.approx(
        0.5 * 2.0 * expected_soft_triplet(STUDENT, TEACHER), rel=1e-5)
    # Student B's points 0, 2, 5, 6 mine the same pairs as student A's.
    assert losses["loss_soft_triplet_b"].item() == pytest.approx(
        0.5 * 2.0 * expected_soft_triplet([0.0, 2.0, 5.0, 6.0], TEACHER_A), rel=1e-5)


def test_adapt_losses_soft_label_mode_and_switches():
    student = [_branch(STUDENT, LOGITS_A), _branch(STUDENT, LOGITS_B)]
    teacher = [_branch(TEACHER_A, LOGITS_TA), _branch(TEACHER, LOGITS_TB)]
    soft = torch.tensor([[0.75, 0.25], [1.0, 0.0], [0.5, 0.5], [0.0, 0.5]])
    losses = _adapt(student, teacher, soft, ce=1.0, soft_ce=0.0, soft_tri=0.0)
    assert set(losses) == {"loss_ce_a", "loss_ce_b"}  # a zero weight drops the term (Table 5)
    expected = sum(-sum(y * l for y, l in zip(ys, log_softmax(row))) for ys, row in zip(soft.tolist(), LOGITS_A)) / 4
    assert losses["loss_ce_a"].item() == pytest.approx(0.5 * expected, rel=1e-5)


def test_pretrain_losses_are_smoothed_ce_plus_soft_margin_batch_hard_triplet():
    student = [_branch(STUDENT, LOGITS_A), _branch(TEACHER, LOGITS_B)]
    losses = pretrain_losses(student, LABELS, ce_epsilon=0.1, tri_margin=0.0)

    def soft_margin_triplet(xs):
        return sum(math.log1p(math.exp(-(abs(xs[i] - xs[n]) - abs(xs[i] - xs[p]))))
                   for i, (p, n) in MINED.items()) / 4

    # Teacher points 0, 2, 3, 4 mine (1,2), (0,2), (3,1), (2,1) too.
    assert losses["loss_triplet_a"].item() == pytest.approx(0.5 * soft_margin_triplet(STUDENT), rel=1e-5)
    assert losses["loss_triplet_b"].item() == pytest.approx(0.5 * soft_margin_triplet(TEACHER), rel=1e-5)
    assert losses["loss_ce_a"].item() == pytest.approx(0.5 * expected_smoothed_ce(LOGITS_A, LABELS.tolist()), rel=1e-5)
