"""The teacher's EMA step on the paper's model: the per-parameter update it replaced against
``SLR.update_teacher`` (pairs checked once, fused foreach kernels, no device sync), same run.

    python benchmarks/ema_update.py                 # CPU, dual ResNet-50 pair of configs/SLR/d2m.yml
    python benchmarks/ema_update.py --device cuda   # where the per-step sync and launches cost most

Both variants update copies of the same model from the same student for ``--steps`` steps, each
waited for; the table gives the median milliseconds per step, and the largest difference between
the two teachers afterwards (float32 rounding only; the test suite holds it under 1e-6).
"""
import argparse
import copy
import os
import statistics
import time

import torch
from fastreid.config import get_cfg
from fastreid.modeling import build_model

import fastreid_slr  # noqa: F401  (registers SLR)
from fastreid_slr import add_slr_config
from fastreid_slr.modeling import momentum_at

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "SLR", "d2m.yml")


@torch.no_grad()
def per_parameter_step(model):
    """The update before the fused one: the step read from the device, then, for every parameter
    looked up by name, a shape check and two kernels."""
    momentum = momentum_at(int(model.ema_step), model.ema_momentum)
    student = dict(model.student.named_parameters())
    for name, t in model.teacher.named_parameters():
        s = student[name]
        assert t.shape == s.shape, name
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
    model.ema_step += 1


def timed(step, model, steps, device):
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step(model)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[1:]) * 1000  # the first fused step builds the pairs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--depth", default="50x", help="MODEL.BACKBONE.DEPTH (18x for a quick look)")
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    cfg = add_slr_config(get_cfg())
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(["MODEL.DEVICE", args.device, "MODEL.BACKBONE.PRETRAIN", "False",
                         "MODEL.BACKBONE.DEPTH", args.depth, "MODEL.HEADS.NUM_CLASSES", "700"])
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.student.parameters():  # a student that differs from the teacher
            p.add_(0.01 * torch.randn_like(p))
    device = model.device
    before, after = copy.deepcopy(model), copy.deepcopy(model)
    tensors = sum(1 for _ in model.teacher.parameters())
    before_ms = timed(per_parameter_step, before, args.steps, device)
    after_ms = timed(lambda m: m.update_teacher(), after, args.steps, device)
    difference = max((a - b).abs().max().item() for a, b in zip(before.teacher.parameters(), after.teacher.parameters()))
    print(f"{cfg.MODEL.BACKBONE.NAME} {args.depth} pair, {tensors} teacher tensors, {args.device}, "
          f"{torch.get_num_threads()} thread(s), median of {args.steps - 1} steps")
    print("| EMA step | ms |\n|---|---|")
    print(f"| per parameter (before) | {before_ms:.2f} |\n| fused foreach (now) | {after_ms:.2f} |")
    print(f"speedup={before_ms / after_ms:.2f} max_abs_teacher_difference={difference:.1e}")


if __name__ == "__main__":
    main()
