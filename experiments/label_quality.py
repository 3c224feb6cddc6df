"""Pseudo-label quality of DBSCAN alone and SLR variants over a simulated sequence of epochs.

    python experiments/label_quality.py [--n 6000 --dim 512 --epochs 8]

Features of known identities improve and drift from epoch to epoch (``pseudo_labels.
synthetic_features``); each epoch is clustered once (Jaccard + DBSCAN) and every variant refines
that same sequence with its own ``SLRRefiner``. There is no training loop: this measures what SLR
does to the labels of a given clustering sequence (the shape of the paper's Tables 3 and 4), not
how training reacts to them.

Scores of the hard labels against the identities, averaged over the refined epochs (1..E-1), all
from ``slr_refine.quality.label_quality`` (the training log's): ARI and NMI with each dropped
sample as its own cluster, pairwise precision (same-label pairs that are the same identity),
pairwise recall (same-identity pairs, among all samples, that share a label: dropping a sample
costs recall), kept fraction, and clusters per identity.
"""
import argparse
import time

import numpy as np
from slr_refine import SLRRefiner, cluster_dbscan, jaccard_distance
from slr_refine.quality import label_quality
from pseudo_labels import synthetic_features


def label_scores(labels, truth):
    """The training log's label quality, and clusters per identity."""
    quality = label_quality(labels, truth)
    return {"ari": quality["ari"], "nmi": quality["nmi"], "precision": quality["pair_precision"],
            "recall": quality["pair_recall"], "kept": 1 - quality["outlier_fraction"],
            "clusters_per_id": quality["clusters"] / quality["identities"]}


def variants(min_cluster_sizes):
    """name -> refiner; grouped like the paper's hardening, alpha and min-cluster-size tables."""
    table = {"DBSCAN only (ABMT)": SLRRefiner(enabled=False)}
    for method in ("hdbscan", "dbscan", "max", "none"):
        table[f"harden={method} a=0.5"] = SLRRefiner(alpha=0.5, harden_method=method)
    table["harden=max a=0.5, today's outliers not projected"] = SLRRefiner(harden_method="max", project_outliers=False)
    for alpha in (0.3, 0.5, 0.7, 0.9):
        table[f"hdbscan a={alpha} mcs=7"] = SLRRefiner(alpha=alpha)
    for size in min_cluster_sizes:
        table[f"hdbscan a=0.5 mcs={size}"] = SLRRefiner(alpha=0.5, min_cluster_size=size)
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--eps", type=float, default=0.6)
    args = parser.parse_args()
    n_ids = round(args.n / 17.2)
    refiners = variants(range(4, 9))
    scores = {name: [] for name in refiners}
    seconds = {name: 0.0 for name in refiners}
    print(f"N={args.n} D={args.dim} identities={n_ids} epochs={args.epochs} eps={args.eps}")
    for epoch in range(args.epochs):
        features, truth, _ = synthetic_features(args.n, args.dim, n_ids, epoch)
        cur = cluster_dbscan(jaccard_distance(features), args.eps)
        for name, refiner in refiners.items():
            start = time.perf_counter()
            hard = refiner.step(cur).hard_labels
            seconds[name] += time.perf_counter() - start
            if epoch > 0:
                scores[name].append(label_scores(hard, truth))
        print(f"epoch {epoch}: DBSCAN {cur.max() + 1} clusters, {(cur < 0).mean():.1%} outliers, "
              f"ARI {label_scores(cur, truth)['ari']:.3f}")

    columns = ("ari", "nmi", "precision", "recall", "kept", "clusters_per_id")
    print(f"\nmean over epochs 1..{args.epochs - 1} (harden=none trains on soft labels; its hard labels are DBSCAN's)")
    print("| variant | " + " | ".join(columns) + " | s/epoch |")
    print("|---" * (len(columns) + 2) + "|")
    for name, rows in scores.items():
        means = [np.mean([row[c] for row in rows]) for c in columns]
        print(f"| {name} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {seconds[name] / args.epochs:.3f} |")


if __name__ == "__main__":
    main()
