#!/usr/bin/env python
"""Ranked lists for a few target queries, one row per model: what adaptation changed, as a person
looks at it.

    python tools/plot_ranked_lists.py --config-file configs/Demo/slr-procedural.yml \\
        --model "source only" output/demo/source/model_final.pth --model SLR output/demo/slr/model_final.pth \\
        -o output/demo/ranked_lists.png [--queries 6] [--top 10] [KEY VALUE ...]

The queries are evenly spaced through the query list of the config's first test set
(``DATASETS.TESTS[0]``), not picked. Each model ranks the whole gallery as fast-reid's evaluation
does (cosine distance; the images of the query's identity from the query's own camera left out);
a row shows the query, then its top images, a true match framed green, a wrong one red, each with
its camera, and the query's average precision over the whole ranking.
"""
import argparse

import matplotlib
import numpy as np
from PIL import Image

import fastreid_slr  # noqa: F401  (compat fixes, the plugin's registries)
from fastreid.data.transforms import build_transforms
from fastreid_slr.data.paths import build_dataset
from fastreid_slr.deploy import load_trained
from fastreid_slr.retrieval import image_features, nearest
from fastreid_slr.run import ConfigExtension, load_config
from procedural_reid import add_procedural_config, apply_procedural_config

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TRUE, FALSE = "#1a9850", "#d73027"


def pick_queries(num_queries: int, count: int) -> np.ndarray:
    """``count`` query indices evenly spaced through the list: no choosing what looks good."""
    return np.unique(np.linspace(0, num_queries - 1, min(count, num_queries)).round().astype(int))


def ranked_lists(cfg, weights, queries, gallery):
    """The gallery ranked for each query ``(path, pid, camid)`` by the model at ``weights``, as
    fast-reid's evaluation ranks it (the query's identity in its own camera left out): per query,
    gallery indices nearest first and whether each is a true match (the same identity)."""
    model = load_trained(cfg, weights)
    transforms = build_transforms(cfg, is_train=False)
    query_features, gallery_features = (
        image_features(model, [path for path, _, _ in items], transforms, cfg.TEST.IMS_PER_BATCH,
                       cfg.DATALOADER.NUM_WORKERS) for items in (queries, gallery))
    q_pids, q_cams = (np.array([item[i] for item in queries]) for i in (1, 2))
    g_pids, g_cams = (np.array([item[i] for item in gallery]) for i in (1, 2))
    order, _ = nearest(query_features, gallery_features, len(gallery))
    rankings = []
    for pid, cam, row in zip(q_pids, q_cams, order):
        row = row[(g_pids[row] != pid) | (g_cams[row] != cam)]
        rankings.append((row, g_pids[row] == pid))
    return rankings


def average_precision(matches: np.ndarray) -> float:
    """AP of one ranking (bool, nearest first), as fast-reid's evaluator computes it."""
    hits = np.flatnonzero(matches)
    return float(np.mean(np.arange(1, len(hits) + 1) / (hits + 1))) if len(hits) else 0.0


def _image(ax, path, title, frame=None):
    ax.imshow(Image.open(path).convert("RGB"))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7, pad=2)
    for spine in ax.spines.values():
        spine.set_edgecolor(frame or "white")
        spine.set_linewidth(3 if frame else 0)


def plot(rankings, queries, gallery, top, output):
    """``rankings``: {model name: its ``ranked_lists``}; one row per query and model."""
    rows = [(q, name) for q in range(len(queries)) for name in rankings]
    height = 1.45 * len(rows)
    fig, axes = plt.subplots(len(rows), top + 1, figsize=(0.75 * (top + 1) + 1.2, height), squeeze=False)
    for (q, name), row in zip(rows, axes):
        order, matches = rankings[name][q]
        path, _, camid = queries[q]
        _image(row[0], path, f"query {q + 1}, cam {camid}")
        row[0].set_ylabel(f"{name}\nAP {average_precision(matches):.2f}", fontsize=8)
        for ax, index, match in zip(row[1:], order[:top], matches[:top]):
            _image(ax, gallery[index][0], f"cam {gallery[index][2]}", TRUE if match else FALSE)
    fig.suptitle(f"Top {top} of the gallery per query (green: same person, red: another); "
                 f"{len(queries)} evenly spaced queries", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / height))  # room for the title
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, help="the config the models were trained with")
    parser.add_argument("--model", nargs=2, action="append", required=True, metavar=("NAME", "WEIGHTS"),
                        help="a model to show: its name and checkpoint (repeat, in row order)")
    parser.add_argument("-o", "--output", required=True, help="the PNG to write")
    parser.add_argument("--queries", type=int, default=6, help="how many queries (default 6)")
    parser.add_argument("--top", type=int, default=10, help="gallery images per row (default 10)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    args = parser.parse_args(argv)
    procedural = ConfigExtension(add_procedural_config, apply_procedural_config)
    cfg = load_config(args, (procedural,))
    procedural.apply(cfg)
    data = build_dataset(cfg.DATASETS.TESTS[0])
    queries = [data.query[i] for i in pick_queries(len(data.query), args.queries)]
    rankings = {name: ranked_lists(cfg, weights, queries, data.gallery) for name, weights in args.model}
    return plot(rankings, queries, data.gallery, args.top, args.output)


if __name__ == "__main__":
    main()
