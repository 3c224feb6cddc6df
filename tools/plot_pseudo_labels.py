#!/usr/bin/env python
"""Plot SLR runs' per-epoch pseudo-label statistics and target mAP into one PNG.

    python tools/plot_pseudo_labels.py output/demo/slr output/demo/abmt --level "source only" output/demo/source \\
        --level AdaBN output/demo/adabn -o output/demo/pseudo_labels.png

Reads each run's ``slr_epochs.jsonl`` (``fastreid_slr.engine.records``): clusters before and after
refinement, label quality against the true identities when the dataset knows them, and the
evaluation of each evaluated epoch.
"""
import argparse
import itertools
import json
import os

import matplotlib

from fastreid_slr.engine.records import RunRecord

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(run_dirs, labels, output, levels=()):
    fig, (ax_clusters, ax_quality, ax_map) = plt.subplots(1, 3, figsize=(15, 4.2))
    for run_dir, label in zip(run_dirs, labels):
        record = RunRecord.read(run_dir)
        pseudo, evals = record.pseudo_labels(), list(record.evaluations().items())
        epochs = [r["epoch"] for r in pseudo]
        line, = ax_clusters.plot(epochs, [r["clusters_after"] for r in pseudo], "o-", label=f"{label}: trained on")
        ax_clusters.plot(epochs, [r["clusters_before"] for r in pseudo], "x--", color=line.get_color(),
                         label=f"{label}: DBSCAN")
        if pseudo and "identities" in pseudo[0]:
            ax_clusters.axhline(pseudo[0]["identities"], color="gray", lw=0.8)
            for key, style in (("ari", "o-"), ("pair_precision", "s--"), ("pair_recall", "^:")):
                ax_quality.plot(epochs, [r.get(key, float("nan")) for r in pseudo], style,
                                color=line.get_color(), label=f"{label}: {key}")
        if evals:
            ax_map.plot([e for e, _ in evals], [r.get("mAP", float("nan")) for _, r in evals], "o-",
                        color=line.get_color(), label=label)
    for (name, run_dir), style in zip(levels, itertools.cycle(("--", ":", "-."))):  # controls' final mAP
        with open(os.path.join(run_dir, "final_results.json")) as f:
            ax_map.axhline(json.load(f)["mAP"], color="gray", ls=style, label=name)
    ax_clusters.set(title="clusters per epoch (gray: true identities)", xlabel="epoch")
    ax_quality.set(title="pseudo-labels vs true identities", xlabel="epoch", ylim=(0, 1))
    ax_map.set(title="target mAP (%)", xlabel="epoch")
    for ax in (ax_clusters, ax_quality, ax_map):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    return output


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="OUTPUT_DIRs of SLR runs")
    parser.add_argument("--labels", nargs="*", help="legend names (default: folder names)")
    parser.add_argument("--level", nargs=2, action="append", default=[], metavar=("NAME", "DIR"),
                        help="a control's OUTPUT_DIR (e.g. stage 1's, --adabn's): its target mAP as a gray line")
    parser.add_argument("-o", "--output", default="pseudo_labels.png")
    args = parser.parse_args()
    labels = args.labels or [os.path.basename(os.path.normpath(r)) for r in args.runs]
    print(plot(args.runs, labels, args.output, args.level))


if __name__ == "__main__":
    main()
