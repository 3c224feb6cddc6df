#!/usr/bin/env python
"""`make demo`: SLR on the procedural two-domain data, on the CPU, against its baselines.

Runs tools/train_net.py on configs/Demo/slr-procedural.yml twice, refinement on (SLR) and off (the
ABMT baseline); the first run also pretrains on the source domain (stage 1), the second reuses it.
Ends with the target-domain table (source only / ABMT / SLR, last epoch), the pseudo-label quality
per epoch and a PNG of both runs.
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


def train(output_dir, source_dir, opts):
    command = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file", CONFIG,
               "OUTPUT_DIR", output_dir, "SLR.SOURCE.OUTPUT_DIR", source_dir, *opts]
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


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
    runs = {"ABMT (refinement off)": (os.path.join(args.output, "abmt"), ["SLR.REFINE.ENABLED", "False"]),
            "SLR": (os.path.join(args.output, "slr"), [])}
    seconds = {}
    for name, (run_dir, opts) in runs.items():
        seconds[name] = train(run_dir, source_dir, opts + args.opts)

    rows = [["source only (stage 1)", results(source_dir)["mAP"], results(source_dir)["Rank-1"], ""]]
    rows += [[name, results(d)["mAP"], results(d)["Rank-1"], f"{seconds[name]:.0f}"] for name, (d, _) in runs.items()]
    print("\nTarget domain ProceduralB, last epoch (no best-epoch picking):")
    print(tabulate(rows, headers=["method", "mAP (%)", "Rank-1 (%)", "wall s"], floatfmt=".1f", tablefmt="github"))

    for name, (run_dir, _) in runs.items():
        print(f"\nPseudo-labels per epoch, {name}:")
        print(tabulate([[r["epoch"], int(r["clusters_before"]), int(r["clusters_after"]), r["identities"],
                         r["outlier_fraction"], r["ari"], r["pair_precision"], r["pair_recall"]]
                        for r in epochs(run_dir)],
                       headers=["epoch", "DBSCAN", "trained on", "true ids", "outliers", "ARI", "pair P", "pair R"],
                       floatfmt=".3f", tablefmt="github"))

    png = os.path.join(args.output, "pseudo_labels.png")
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "plot_pseudo_labels.py"),
                    *[d for d, _ in runs.values()], "--labels", "ABMT", "SLR", "-o", png], check=True)


if __name__ == "__main__":
    main()
