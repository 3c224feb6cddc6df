"""Mean-teacher update (paper §3.11): teacher <- EMA of the student."""
import torch
from torch import nn

BN_MODES = ("param_only", "ema", "copy")


def momentum_at(step: int, cap: float) -> float:
    """``min(1 - 1/(step+1), cap)``: the first update copies the student, later ones average (MMT)."""
    return min(1.0 - 1.0 / (step + 1), cap)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float, bn_mode: str = "param_only"):
    """teacher = momentum * teacher + (1 - momentum) * student, parameter by parameter.

    Buffers (BN running statistics) by ``bn_mode``: "param_only" leaves them to the teacher's own
    train-mode forwards (ABMT); "ema" averages the floating-point ones like parameters and copies
    the others (``num_batches_tracked``); "copy" copies all of them from the student.
    """
    if bn_mode not in BN_MODES:
        raise ValueError(f"SLR.EMA.BN_MODE {bn_mode!r} is not one of {BN_MODES}")
    t_params, s_params = dict(teacher.named_parameters()), dict(student.named_parameters())
    assert t_params.keys() == s_params.keys(), "teacher and student differ in structure"
    for name, t in t_params.items():
        s = s_params[name]
        assert t.shape == s.shape, f"{name}: teacher {tuple(t.shape)} vs student {tuple(s.shape)}"
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
    if bn_mode == "param_only":
        return
    s_buffers = dict(student.named_buffers())
    for name, t in teacher.named_buffers():
        s = s_buffers[name]
        if bn_mode == "ema" and t.is_floating_point():
            t.mul_(momentum).add_(s, alpha=1.0 - momentum)
        else:
            t.copy_(s)
