#!/usr/bin/env python
"""`make demo`: SLR on the procedural two-domain data, on the CPU, against its baselines.

Runs tools/train_net.py on configs/Demo/slr-procedural.yml twice, refinement on (SLR) and off (the
ABMT baseline). The SLR run pretrains on the source domain first (stage 1); once that is written,
the ABMT run starts beside it and reuses it, so the two adaptations share the cores (on two cores,
two one-thread runs take no longer per step than one). Ends with the target-domain table (source
only / ABMT / SLR, last epoch), the pseudo-label quality per epoch and a PNG of both runs.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from tabulate import tabulate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "Demo", "slr-procedural.yml")
PROGRESS_EVERY_S = 30


class Run:
    """One tools/train_net.py process; its console output goes to ``<run_dir>.log``."""

    def __init__(self, name, run_dir, source_dir, opts, threads):
        self.name, self.run_dir = name, run_dir
        self.log_path = run_dir + ".log"
        command = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file", CONFIG,
                   "OUTPUT_DIR", run_dir, "SLR.SOURCE.OUTPUT_DIR", source_dir, *opts]
        print(f"[{name}] $ {' '.join(command[1:])}\n[{name}] log: {self.log_path}", flush=True)
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        self.start = time.perf_counter()
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
        self.seconds = None

    def poll(self) -> bool:
        """True once finished; a failed run stops the demo with the end of its log."""
        code = self.process.poll()
        if code is None:
            return False
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.start
        if code != 0:
            sys.exit(f"[{self.name}] tools/train_net.py failed (exit {code}); end of {self.log_path}:\n"
                     + "".join(open(self.log_path).readlines()[-30:]))
        return True

    def progress(self) -> str:
        """The newest training/clustering line of the log, for a sign of life."""
        with open(self.log_path, errors="replace") as f:
            lines = [l for l in f if "epoch/iter" in l or "Pseudo-labels" in l or "Stage 1" in l]
        return f"[{self.name}] " + (lines[-1].split("]: ", 1)[-1].strip()[:150] if lines else "starting")


def wait(runs, until):
    """Print progress every PROGRESS_EVERY_S seconds until ``until()`` holds."""
    last = time.perf_counter()
    while not until():
        time.sleep(1)
        if time.perf_counter() - last >= PROGRESS_EVERY_S:
            last = time.perf_counter()
            for run in runs:
                if not run.poll():
                    print(run.progress(), flush=True)


def results(run_dir):
    with open(os.path.join(run_dir, "final_results.json")) as f:
        return json.load(f)


def epochs(run_dir):
    with open(os.path.join(run_dir, "slr_epochs.jsonl")) as f:
        return [r for r in map(json.loads, f) if "clusters_before" in r]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(REPO, "output", "demo"))
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for both runs")
    args = parser.parse_args()
    source_dir = os.path.join(args.output, "source")
    # Each run gets half the cores, less one for its data-loader worker (see tools/train_net.py).
    threads = max(1, (os.cpu_count() or 2) // 2 - 1)

    slr = Run("SLR", os.path.join(args.output, "slr"), source_dir, args.opts, threads)
    wait([slr], lambda: slr.poll() or os.path.isfile(os.path.join(source_dir, "final_results.json")))
    stage1_seconds = time.perf_counter() - slr.start  # ~0 when stage 1 was already there
    abmt = Run("ABMT", os.path.join(args.output, "abmt"), source_dir,
               ["SLR.REFINE.ENABLED", "False", *args.opts], threads)
    runs = {"ABMT (refinement off)": abmt, "SLR": slr}
    wait(runs.values(), lambda: all(run.poll() for run in runs.values()))

    seconds = {"source only (stage 1)": stage1_seconds, "ABMT (refinement off)": abmt.seconds,
               "SLR": slr.seconds - stage1_seconds}
    dirs = {"source only (stage 1)": source_dir, "ABMT (refinement off)": abmt.run_dir, "SLR": slr.run_dir}
    rows = [[name, results(d)["mAP"], results(d)["Rank-1"], f"{seconds[name]:.0f}"] for name, d in dirs.items()]
    print("\nTarget domain ProceduralB, last epoch (no best-epoch picking):")
    print(tabulate(rows, headers=["method", "mAP (%)", "Rank-1 (%)", "wall s"], floatfmt=".1f", tablefmt="github"))

    for name, run in runs.items():
        print(f"\nPseudo-labels per epoch, {name}:")
        print(tabulate([[r["epoch"], int(r["clusters_before"]), int(r["clusters_after"]), r["identities"],
                         r["outlier_fraction"], r["ari"], r["pair_precision"], r["pair_recall"]]
                        for r in epochs(run.run_dir)],
                       headers=["epoch", "DBSCAN", "trained on", "true ids", "outliers", "ARI", "pair P", "pair R"],
                       floatfmt=".3f", tablefmt="github"))

    png = os.path.join(args.output, "pseudo_labels.png")
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "plot_pseudo_labels.py"),
                    abmt.run_dir, slr.run_dir, "--labels", "ABMT", "SLR", "--source", source_dir, "-o", png],
                   check=True)


if __name__ == "__main__":
    main()
