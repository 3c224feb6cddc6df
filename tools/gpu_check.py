#!/usr/bin/env python
"""`make gpu-check`: does this machine run the paper's SLR, and how fast? One call, no downloads.

The parts and what each measures: ``fastreid_slr.gpu_check`` (docs/performance.md has the table).
This script chooses the mode (full with CUDA, else the tiny CPU mode), the config files
(configs/SLR/d2m.yml; configs/Demo/tiny.yml in the tiny mode) and the data (the procedural
datasets), runs the parts and prints their table.

    python tools/gpu_check.py [--output output/gpu-check] [--mode auto|full|tiny] [--ddp auto|on|off] [--keep]

Writes ``<output>/gpu_check.json``, prints one table; exits 1 when a part failed (the others
still run; each failure is in the JSON). ``--rank-run`` (first argument) is the ddp part's child:
tools/train_net.py's command line follows.
"""
import argparse
import logging
import os
import sys

import torch

import fastreid_slr  # noqa: F401  (compat patches and registrations)
from fastreid_slr import run
from fastreid_slr.gpu_check.context import Context, clear_runs, remove_checkpoints
from fastreid_slr.gpu_check.ranks import launch_recorded
from fastreid_slr.gpu_check.report import Check
from procedural_reid import add_procedural_config, apply_procedural_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "SLR", "d2m.yml")
TINY_OVERLAY = os.path.join(REPO, "configs", "Demo", "tiny.yml")
PROCEDURAL = run.ConfigExtension(add_procedural_config, apply_procedural_config)
RANK_RUN = "--rank-run"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=os.path.join(REPO, "output", "gpu-check"))
    parser.add_argument("--mode", choices=("auto", "full", "tiny"), default="auto",
                        help="full: d2m.yml's model on CUDA; tiny: the CPU mode; auto: full when CUDA is there")
    parser.add_argument("--ddp", choices=("auto", "on", "off"), default="auto",
                        help="the 2-rank run: auto with two GPUs; on: also without (gloo on the CPU)")
    parser.add_argument("--keep", action="store_true", help="keep the runs' checkpoints (GBs in full mode)")
    args = parser.parse_args()
    args.full = args.mode == "full" or (args.mode == "auto" and torch.cuda.is_available())
    if args.full and not torch.cuda.is_available():
        parser.error("--mode full needs CUDA")
    return args


def log_to(output: str):
    """fast-reid's and the plugin's logs into ``<output>/gpu_check.log``."""
    log = logging.FileHandler(os.path.join(output, "gpu_check.log"))
    log.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    for name in ("fastreid", "fastreid_slr"):
        logging.getLogger(name).addHandler(log)
        logging.getLogger(name).setLevel(logging.INFO)


def main():
    args = parse_args()
    clear_runs(args.output)
    os.makedirs(args.output, exist_ok=True)
    log_to(args.output)
    if not args.full and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))
    context = Context(args.full, args.output, CONFIG, TINY_OVERLAY, (PROCEDURAL,), ddp=args.ddp,
                      rank_command=(sys.executable, os.path.abspath(__file__), RANK_RUN))
    check = Check(context)
    report = check.run()
    if not args.keep:
        remove_checkpoints(args.output)
    check.print_report()
    sys.exit(1 if report["failed"] else 0)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == RANK_RUN:
        launch_recorded(sys.argv[2:], (PROCEDURAL,))
    else:
        main()
