"""The first clustering of the target under camera-blind and camera-aware features, label quality only.

    python experiments/camera_clustering.py --source-dir DIR [--rules rho=R,eps=E,...] [opts...]

From stage 1's weights in ``--source-dir`` (``configs/Demo/slr-procedural.yml`` plus ``opts``, the
shape's), the teacher features of the target's training images that stage 2's first clustering
sees, in each candidate form:

- ``blind``: as they are (the paper's clustering);
- ``centre`` / ``standardize``: each camera's mean (and per-dimension spread) removed from the
  embedding (``slr_refine.camera_normalized``);
- ``camera BN``: every BN layer's statistics re-estimated on each camera's images alone before that
  camera's features are extracted (``extract_features_per_camera_bn``), alone and then centred;
- ``CA-Jaccard`` / ``camera BN + CA-Jaccard``: the blind / camera-BN features under CA-Jaccard
  (``SLR.CLUSTER.CAMERA_JACCARD``: the k-reciprocal sets within and across cameras);

each clustered by DBSCAN under each ``--rules`` radius (ABMT's ρ rule or a fixed eps) (the source features in the same form, source
cameras for source images), scored against the true identities (pair precision / recall, ARI,
clusters, outliers) and by nearest neighbours (same identity; same identity in another camera).
Cheap (no training): a screen of the candidates before the shape sweep trains the best ones.
Prints a table and one ``RESULT {json}`` line.
"""
import argparse
import json
import os
import sys

import numpy as np
from tabulate import tabulate

from demo_controls import neighbours, setup, with_opts  # benchmarks/ is this script's folder

from fastreid.data.transforms import build_transforms
from fastreid.engine import DefaultTrainer
from fastreid.utils.checkpoint import Checkpointer
from fastreid_slr.data.loaders import build_feature_loader, load_train_items
from fastreid_slr.engine import PseudoLabeler, ensure_source_weights
from fastreid_slr.engine.camera_bn import camera_indices, extract_features_per_camera_bn
from fastreid_slr.engine.features import extract_features
from slr_refine.camera import camera_normalized
from slr_refine.quality import label_quality


def rule_opts(rule: str) -> list:
    kind, value = rule.split("=")
    return {"rho": ["SLR.CLUSTER.RHO", float(value)],
            "eps": ["SLR.CLUSTER.RHO", 0.0, "SLR.CLUSTER.EPS", float(value)]}[kind]


def features_of(cfg, model, items, per_camera_bn):
    transforms = build_transforms(cfg, is_train=False)

    def batches_of(rows=None):
        chosen = items if rows is None else [items[i] for i in rows]
        return build_feature_loader(chosen, transforms, cfg.TEST.IMS_PER_BATCH, cfg.DATALOADER.NUM_WORKERS)

    if per_camera_bn:
        return extract_features_per_camera_bn(model, camera_indices(items), batches_of, {})
    return extract_features(model, batches_of(), len(items))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--rules", type=lambda text: [rule_opts(r) for r in text.split(",")],
                        default=[rule_opts("rho=0.004")],
                        help="comma-separated DBSCAN radius rules: rho=R (ABMT's per-epoch eps) or eps=E (fixed)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides (the shape's)")
    args = parser.parse_args()
    cfg = setup(["SLR.SOURCE.OUTPUT_DIR", args.source_dir, *args.opts], os.path.join(args.source_dir, "camera"))
    model = DefaultTrainer.build_model(with_opts(cfg, ["MODEL.BACKBONE.PRETRAIN", "False"]))
    Checkpointer(model).load(ensure_source_weights(cfg))
    model.eval()

    target = load_train_items(cfg.DATASETS.NAMES)
    source = load_train_items(cfg.SLR.SOURCE.DATASETS)
    ids = np.unique([pid for _, pid, _ in target], return_inverse=True)[1]
    target_cams, source_cams = camera_indices(target), camera_indices(source)
    plain = {name: features_of(cfg, model, items, False) for name, items in (("t", target), ("s", source))}
    camera_bn = {name: features_of(cfg, model, items, True) for name, items in (("t", target), ("s", source))}
    candidates = {  # name: (features, CA-Jaccard)
        "blind": (plain, False),
        "centre": ({"t": camera_normalized(plain["t"], target_cams, "centre"),
                    "s": camera_normalized(plain["s"], source_cams, "centre")}, False),
        "standardize": ({"t": camera_normalized(plain["t"], target_cams, "standardize"),
                         "s": camera_normalized(plain["s"], source_cams, "standardize")}, False),
        "camera BN": (camera_bn, False),
        "camera BN + centre": ({"t": camera_normalized(camera_bn["t"], target_cams, "centre"),
                                "s": camera_normalized(camera_bn["s"], source_cams, "centre")}, False),
        "CA-Jaccard": (plain, True),
        "camera BN + CA-Jaccard": (camera_bn, True),
    }
    rows = []
    for name, (features, camera_jaccard) in candidates.items():
        near = neighbours(features["t"], ids, target_cams)
        for rule in args.rules:
            labeler = PseudoLabeler.from_config(
                with_opts(cfg, [*rule, "SLR.CLUSTER.CAMERA_JACCARD", camera_jaccard]), cameras=target_cams)
            result = labeler(features["t"], features["s"] if labeler.needs_source_features else None)
            quality = label_quality(result.labels, ids)
            rows.append({"features": name, "rule": " ".join(map(str, rule[1::2])), "eps": result.stats["eps"],
                         "nn_same_id": near["nn_same_id"],
                         "nn_same_id_other_cam": near["nn_same_id_other_camera"],
                         **{k: quality[k] for k in ("pair_precision", "pair_recall", "ari", "clusters",
                                                    "identities", "outlier_fraction")}})
    print(tabulate([r.values() for r in rows], headers=list(rows[0]), floatfmt=".3f", tablefmt="github"))
    print("RESULT " + json.dumps({"opts": args.opts, "rows": rows}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
