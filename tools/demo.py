#!/usr/bin/env python
"""`make demo`: SLR on the procedural two-domain data, on the CPU, against its controls.

Runs tools/train_net.py on configs/Demo/slr-procedural.yml: SLR first (stage 1, the source model,
then stage 2); once stage 1 is written, beside it the ABMT baseline (refinement off), the AdaBN
control (``--adabn``: the source model with BN statistics re-estimated on the target, no training)
and, with ``--oracle``, stage 2 trained on the target's true identities (``SLR.ORACLE True``, the
upper bound). The runs share the cores (see ``threads`` in ``main``). Ends with the
target-domain table (last epoch, no best-epoch picking; the last epoch's pseudo-label quality
where there are pseudo-labels), a line with each trained run's best evaluated epoch (chosen with
the target's labels: optimistic, for comparison with papers that report it), the pseudo-labels per
epoch, ``summary.json`` and two PNGs: the pseudo-labels per epoch (``pseudo_labels.png``) and the
ranked lists of a few target queries, source-only model against SLR (``ranked_lists.png``, seconds).
"""
import argparse
import json
import os
import subprocess
import sys
import time

from tabulate import tabulate

from fastreid_slr.engine.records import BEST_BY_TARGET_LABELS, RunRecord

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "Demo", "slr-procedural.yml")
PROGRESS_EVERY_S = 30


class Run:
    """One tools/train_net.py process; its console output goes to ``<run_dir>.log``."""

    def __init__(self, name, run_dir, source_dir, opts, threads, flags=()):
        self.name, self.run_dir = name, run_dir
        self.log_path = run_dir + ".log"
        command = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file", CONFIG, *flags,
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


def best_epoch_line(rows):
    """The line under the table: each trained run's best evaluated epoch, labelled (or None)."""
    best = [f"{r['method']} epoch {r[BEST_BY_TARGET_LABELS]['epoch']} mAP {r[BEST_BY_TARGET_LABELS]['mAP']:.1f}"
            for r in rows if r[BEST_BY_TARGET_LABELS]]
    return ("Best evaluated epoch, chosen with the target's labels (optimistic, not the figures above): "
            + "; ".join(best)) if best else None


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


def row(name, run_dir, seconds, trained):
    """One line of the table: target accuracy (last epoch), and for a stage-2 run its last
    pseudo-labels and its best evaluated epoch, chosen with the target's labels."""
    final = results(run_dir)
    record = RunRecord.read(run_dir) if trained else None
    last = record.pseudo_labels()[-1] if trained else {}
    return {"method": name, "mAP": final["mAP"], "Rank-1": final["Rank-1"],
            **{key: last.get(key) for key in ("pair_precision", "pair_recall", "ari")}, "wall_s": seconds,
            BEST_BY_TARGET_LABELS: record.best_evaluated if trained else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(REPO, "output", "demo"))
    parser.add_argument("--oracle", action="store_true",
                        help="also train stage 2 on the target's true identities (the upper bound)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for every run")
    args = parser.parse_args()
    source_dir = os.path.join(args.output, "source")
    # Each run gets half the cores, less one for its data-loader worker (see tools/train_net.py).
    threads = max(1, (os.cpu_count() or 2) // 2 - 1)
    start = time.perf_counter()

    slr = Run("SLR", os.path.join(args.output, "slr"), source_dir, args.opts, threads)
    wait([slr], lambda: slr.poll() or os.path.isfile(os.path.join(source_dir, "final_results.json")))
    stage1_seconds = time.perf_counter() - slr.start  # ~0 when stage 1 was already there
    adabn = Run("AdaBN", os.path.join(args.output, "adabn"), source_dir, args.opts, threads, ["--adabn"])
    abmt = Run("ABMT", os.path.join(args.output, "abmt"), source_dir, ["SLR.REFINE.ENABLED", "False", *args.opts],
               threads)
    trained = {"ABMT (refinement off)": abmt, "SLR": slr}
    if args.oracle:
        trained["true identities (oracle)"] = Run("oracle", os.path.join(args.output, "oracle"), source_dir,
                                                  ["SLR.ORACLE", "True", *args.opts], threads)
    runs = [adabn, *trained.values()]
    wait(runs, lambda: all(run.poll() for run in runs))

    rows = [row("source only", source_dir, stage1_seconds, False), row("AdaBN", adabn.run_dir, adabn.seconds, False)]
    rows += [row(name, run.run_dir, run.seconds - (stage1_seconds if run is slr else 0), True)
             for name, run in trained.items()]
    total = time.perf_counter() - start
    print(f"\nTarget domain ProceduralB, last epoch (no best-epoch picking); wall time {total / 60:.1f} min:")
    print(tabulate([[r["method"], r["mAP"], r["Rank-1"], r["pair_precision"], r["pair_recall"], r["ari"],
                     f"{r['wall_s']:.0f}"] for r in rows],
                   headers=["method", "mAP (%)", "Rank-1 (%)", "pair P", "pair R", "ARI", "wall s"],
                   floatfmt=(None, ".1f", ".1f", ".3f", ".3f", ".3f"), missingval="-", tablefmt="github"))
    if best_epoch_line(rows):
        print(best_epoch_line(rows))

    for name, run in trained.items():
        print(f"\nPseudo-labels per epoch, {name}:")
        print(tabulate([[r["epoch"], int(r["clusters_before"]), int(r["clusters_after"]), int(r["identities"]),
                         r["outlier_fraction"], r["ari"], r["pair_precision"], r["pair_recall"]]
                        for r in RunRecord.read(run.run_dir).pseudo_labels()],
                       headers=["epoch", "DBSCAN", "trained on", "true ids", "outliers", "ARI", "pair P", "pair R"],
                       floatfmt=".3f", tablefmt="github"))

    with open(os.path.join(args.output, "summary.json"), "w") as f:
        json.dump({"opts": args.opts, "wall_s": total, "rows": rows}, f, indent=1)
    png = os.path.join(args.output, "pseudo_labels.png")
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "plot_pseudo_labels.py"),
                    *(run.run_dir for run in trained.values()), "--labels", *trained,
                    "--level", "source only", source_dir, "--level", "AdaBN", adabn.run_dir, "-o", png], check=True)
    # the demo config's SLR.SOURCE.EVAL_PERIOD is 0: stage 2 starts from (and "source only" is) model_final.pth
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "plot_ranked_lists.py"), "--config-file", CONFIG,
                    "--model", "source only", os.path.join(source_dir, "model_final.pth"),
                    "--model", "SLR", os.path.join(slr.run_dir, "model_final.pth"),
                    "-o", os.path.join(args.output, "ranked_lists.png"), *args.opts], check=True)


if __name__ == "__main__":
    main()
