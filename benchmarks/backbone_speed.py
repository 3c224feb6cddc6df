"""Seconds per stage-2 training step of SLR with different backbones, in one process.

    python benchmarks/backbone_speed.py [--threads 1 --batch 32 --size 64 32 --steps 20 --repeats 3]

One step is what the adaptation trainer does per iteration: student and teacher forward on the
same batch, Eq. 6's losses, backward, an Adam step and the teacher's EMA step. The backbones are
timed in turns (repeat 1 of each, then repeat 2, ...), so a load change on a shared machine hits
them alike; the table gives each one's median over the repeats and its ratio to the first.
"""
import argparse
import os
import statistics
import sys
import time

import torch

import fastreid_slr  # noqa: F401  (compat patches, registrations)
from fastreid.config import get_cfg
from fastreid.modeling.meta_arch import build_model
from fastreid.solver import build_optimizer
from fastreid_slr import add_slr_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKBONES = {  # name -> MODEL.BACKBONE opts
    "osnet_x0_25": ["MODEL.BACKBONE.NAME", "build_osnet_backbone", "MODEL.BACKBONE.DEPTH", "x0_25"],
    **{f"slim_dual_{depth}_ls{stride}": ["MODEL.BACKBONE.NAME", "build_slim_dual_backbone",
                                         "MODEL.BACKBONE.DEPTH", depth, "MODEL.BACKBONE.LAST_STRIDE", stride]
       for depth in ("x0_5", "x0_75", "x1_0") for stride in (1, 2)},
}


def build(opts, size, num_classes):
    cfg = add_slr_config(get_cfg())
    cfg.merge_from_file(os.path.join(REPO, "configs", "Base-SLR.yml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False",
                         "INPUT.SIZE_TRAIN", list(size), *opts])
    model = build_model(cfg)
    feat = sum(h.classifier.weight.shape[1] for h in model.student.heads)
    model.reset_classifiers(num_classes, torch.randn(num_classes, feat))
    optimizer, _ = build_optimizer(cfg, model)
    return model.train(), optimizer


def step(model, optimizer, batch):
    losses = model(batch)
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    model.update_teacher()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, nargs=2, default=(64, 32))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = {"images": torch.rand(args.batch, 3, *args.size) * 255,
             "targets": torch.arange(args.batch // 4).repeat_interleave(4)}
    models = {}
    for name in args.backbones:
        model, optimizer = build(BACKBONES[name], args.size, num_classes=200)
        params = sum(p.numel() for p in model.student.parameters())
        print(f"{name}: {params / 1e6:.2f} M student parameters", flush=True)
        for _ in range(3):  # warm-up
            step(model, optimizer, batch)
        models[name] = (model, optimizer)
    times = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, (model, optimizer) in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(model, optimizer, batch)
            times[name].append((time.perf_counter() - start) / args.steps)
    first = statistics.median(times[args.backbones[0]])
    print(f"\nthreads {args.threads}, batch {args.batch}, input {args.size[0]}x{args.size[1]}, "
          f"{args.steps} steps x {args.repeats} repeats")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"{name:>16}: {med * 1000:7.1f} ms/step (repeats {', '.join(f'{x * 1000:.1f}' for x in t)}); "
              f"{args.backbones[0]} / this = {first / med:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
