"""Mean-teacher update (paper §3.11): teacher <- EMA of the student."""
from typing import List

import torch
from torch import nn

BN_MODES = ("param_only", "ema", "copy")


def momentum_at(step: int, cap: float) -> float:
    """``min(1 - 1/(step+1), cap)``: the first update copies the student, later ones average (MMT)."""
    return min(1.0 - 1.0 / (step + 1), cap)


class TeacherEMA:
    """teacher = momentum * teacher + (1 - momentum) * student, over tensors paired once.

    Names and shapes are checked here, once; ``update`` is then one fused foreach lerp over all
    tensors (the per-parameter loop it replaces looked every name up and launched two kernels per
    tensor, ~400 for the ResNet-50 pair, at every step) and never waits on the device. The pairs
    hold the module's tensor objects: build a new one when parameters or buffers are replaced
    (classifier resize, checkpoint load, ``.to()``).

    Buffers (BN running statistics) by ``bn_mode``: "param_only" leaves them to the teacher's own
    train-mode forwards (ABMT); "ema" averages the floating-point ones like parameters and copies
    the others (``num_batches_tracked``); "copy" copies all of them from the student.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, bn_mode: str = "param_only"):
        if bn_mode not in BN_MODES:
            raise ValueError(f"SLR.EMA.BN_MODE {bn_mode!r} is not one of {BN_MODES}")
        self.averaged = _paired(teacher.named_parameters(), student.named_parameters(), "parameters")
        self.copied: List[List[torch.Tensor]] = [[], []]
        if bn_mode == "param_only":
            return
        for t, s in zip(*_paired(teacher.named_buffers(), student.named_buffers(), "buffers")):
            target = self.averaged if bn_mode == "ema" and t.is_floating_point() else self.copied
            target[0].append(t)
            target[1].append(s)

    @torch.no_grad()
    def update(self, momentum: float):
        teacher, student = self.averaged
        # teacher + (1 - m) * (student - teacher): one pass over memory instead of mul_ then add_
        torch._foreach_lerp_(teacher, student, 1.0 - momentum)
        if self.copied[0]:
            torch._foreach_copy_(*self.copied)


def _paired(teacher_named, student_named, kind: str) -> List[List[torch.Tensor]]:
    """[teacher tensors, student tensors] matched by name; a structural mismatch is an error."""
    teacher, student = dict(teacher_named), dict(student_named)
    if teacher.keys() != student.keys():
        raise ValueError(f"teacher and student differ in {kind}: {sorted(teacher.keys() ^ student.keys())[:5]}")
    for name, t in teacher.items():
        if t.shape != student[name].shape:
            raise ValueError(f"{name}: teacher {tuple(t.shape)} vs student {tuple(student[name].shape)}")
    return [list(teacher.values()), [student[name] for name in teacher]]
