"""The demo's controls: how much of the possible gain adaptation can recover on the procedural data.

    python experiments/demo_controls.py --source-dir output/demo/source [--oracle-dir DIR] [opts...]

On ``configs/Demo/slr-procedural.yml`` (plus ``opts``), from stage 1's weights in
``--source-dir`` (trained first if missing, as the demo would):

- in-domain: the source model on the source domain's own test split (what the domain gap costs);
- source only: the same model on the target;
- AdaBN: its BN statistics re-estimated on the target's training images (test transforms, a
  cumulative average over one pass), no weight changes (``tools/train_net.py --adabn``);
- nearest neighbours among the target training images, before and after AdaBN: how often the
  nearest is the same identity, the same camera, and the same identity in another camera;
- the first clustering of the AdaBN features, under the configured rule and under fast-reid's /
  SpCL's fixed one (k1 30, eps 0.6): pair precision / recall, ARI, clusters, outliers;
- with ``--oracle-dir``: stage 2 trained on the target's true identities (every image kept, the
  same schedule and losses), the upper bound of pseudo-label training.

Prints a table and one ``RESULT {json}`` line, also appended to ``<source-dir>/controls.jsonl``.
"""
import argparse
import json
import os
import sys

import numpy as np
from tabulate import tabulate

import fastreid_slr  # noqa: F401  (applies the compat patches, registers the plugin)
from fastreid.data.transforms import build_transforms
from fastreid.engine import DefaultTrainer
from fastreid.utils.checkpoint import Checkpointer
from fastreid_slr import run
from fastreid_slr.data.loaders import build_feature_loader, load_train_items
from fastreid_slr.engine import (PseudoLabeler, SLRTrainer, ensure_source_weights, reestimate_batch_norm,
                                 target_train_loader, write_final_results)
from fastreid_slr.engine.features import extract_features
from procedural_reid import add_procedural_config, apply_procedural_config
from slr_refine.quality import label_quality

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "Demo", "slr-procedural.yml")
FIXED_RULE = ["SLR.CLUSTER.RHO", "0.0", "SLR.CLUSTER.K1", "30", "SLR.CLUSTER.EPS", "0.6",
              "SLR.CLUSTER.SOURCE_WEIGHT", "0.0"]
PROCEDURAL = run.ConfigExtension(add_procedural_config, apply_procedural_config)


def setup(opts, output_dir):
    """tools/train_net.py's set-up of the demo config with ``opts``."""
    args = run.argument_parser().parse_args(["--config-file", CONFIG, *opts, "OUTPUT_DIR", output_dir])
    return run.setup(args, (PROCEDURAL,))


def with_opts(cfg, opts):
    cfg = cfg.clone()
    cfg.defrost()
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg


def evaluate(cfg, model, dataset):
    results = DefaultTrainer.test(with_opts(cfg, ["DATASETS.TESTS", (dataset,)]), model)
    return {"mAP": float(results["mAP"]), "Rank-1": float(results["Rank-1"])}


def target_features(cfg, model, items):
    loader = build_feature_loader(items, build_transforms(cfg, is_train=False), cfg.TEST.IMS_PER_BATCH,
                                  cfg.DATALOADER.NUM_WORKERS)
    return extract_features(model, loader, len(items), description="target train features")


def neighbours(features, ids, cams):
    """Nearest neighbour (cosine) of each image: same identity / same camera / same identity in
    another camera; and the nearest among other cameras' images: same identity."""
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    nearest = sim.argmax(1)
    same_id, same_cam = ids[nearest] == ids, cams[nearest] == cams
    nearest_elsewhere = np.where(cams[None, :] == cams[:, None], -np.inf, sim).argmax(1)
    return {"nn_same_id": float(same_id.mean()), "nn_same_camera": float(same_cam.mean()),
            "nn_same_id_other_camera": float((same_id & ~same_cam).mean()),
            "other_camera_nn_same_id": float((ids[nearest_elsewhere] == ids).mean())}


def clustering(cfg, features, source_features, ids, opts):
    cfg = with_opts(cfg, opts)
    labeler = PseudoLabeler.from_config(cfg)
    result = labeler(features, source_features if labeler.needs_source_features else None)
    quality = label_quality(result.labels, ids)
    c = cfg.SLR.CLUSTER
    rule = f"k1 {c.K1}, " + (f"rho {c.RHO:g}" if c.RHO > 0 else f"eps {c.EPS:g}") + f", source term {c.SOURCE_WEIGHT:g}"
    return {"rule": rule, "eps": float(result.stats["eps"]),
            **{k: quality[k] for k in ("pair_precision", "pair_recall", "ari", "clusters", "outlier_fraction")}}


def oracle(cfg, weights, output_dir):
    """Stage 2 on the target's true identities (``SLR.ORACLE``), as tools/demo.py --oracle runs it."""
    cfg = with_opts(cfg, ["MODEL.WEIGHTS", weights, "SLR.SOURCE.WEIGHTS", weights, "SLR.ORACLE", "True",
                          "OUTPUT_DIR", output_dir])
    os.makedirs(output_dir, exist_ok=True)
    run.seed(cfg)
    trainer = SLRTrainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    write_final_results(output_dir, results)
    return {"mAP": float(results["mAP"]), "Rank-1": float(results["Rank-1"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", default=os.path.join(REPO, "output", "demo", "source"))
    parser.add_argument("--oracle-dir", help="also train stage 2 on the true target identities here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    args = parser.parse_args()
    cfg = setup(["SLR.SOURCE.OUTPUT_DIR", args.source_dir, *args.opts], os.path.join(args.source_dir, "controls"))
    weights = ensure_source_weights(cfg)
    model = DefaultTrainer.build_model(with_opts(cfg, ["MODEL.BACKBONE.PRETRAIN", "False"]))
    Checkpointer(model).load(weights)
    model.eval()

    source, target = cfg.SLR.SOURCE.DATASETS[0], cfg.DATASETS.TESTS[0]
    items = load_train_items(cfg.DATASETS.NAMES)
    ids = np.unique([pid for _, pid, _ in items], return_inverse=True)[1]
    cams = np.unique([cam for _, _, cam in items], return_inverse=True)[1]
    out = {"opts": args.opts, "in_domain": evaluate(cfg, model, source), "source_only": evaluate(cfg, model, target)}
    out["neighbours_source_only"] = neighbours(target_features(cfg, model, items), ids, cams)
    reestimate_batch_norm(model, target_train_loader(cfg))
    out["adabn"] = evaluate(cfg, model, target)
    features = target_features(cfg, model, items)
    out["neighbours_adabn"] = neighbours(features, ids, cams)
    source_features = target_features(cfg, model, load_train_items(cfg.SLR.SOURCE.DATASETS))  # the source term's
    out["first_clustering_adabn"] = [clustering(cfg, features, source_features, ids, rule)
                                     for rule in ([], FIXED_RULE)]
    if args.oracle_dir:
        out["oracle"] = oracle(cfg, weights, args.oracle_dir)

    rows = [[f"in-domain ({source} test)", *out["in_domain"].values()],
            [f"source only ({target})", *out["source_only"].values()], ["AdaBN", *out["adabn"].values()]]
    if "oracle" in out:
        rows.append(["stage 2 on true identities", *out["oracle"].values()])
    print(tabulate(rows, headers=["model", "mAP (%)", "Rank-1 (%)"], floatfmt=".1f", tablefmt="github"))
    print(tabulate([[k, *(out[f"neighbours_{m}"][k] for m in ("source_only", "adabn"))] for k in out["neighbours_adabn"]],
                   headers=["target train, nearest neighbour", "source only", "AdaBN"], floatfmt=".3f", tablefmt="github"))
    print(tabulate([r.values() for r in out["first_clustering_adabn"]], headers=list(out["first_clustering_adabn"][0]),
                   floatfmt=".3f", tablefmt="github"))
    print("RESULT " + json.dumps(out), flush=True)
    with open(os.path.join(args.source_dir, "controls.jsonl"), "a") as f:
        f.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
