#!/usr/bin/env python
"""The top-k gallery images for query images, with any trained model: a retrieval service's core.

    python tools/query.py --config-file configs/Demo/slr-procedural.yml \\
        --weights output/demo/slr/model_final.pth --gallery GALLERY_DIR -k 10 QUERY [QUERY ...]

Queries and gallery are image files or folders (every .jpg/.jpeg/.png/.bmp below, sorted). The
config is the one the model was trained with (any shipped config, or your own with fast-reid's
keys, the plugin's and ``DATASETS.PROCEDURAL``'s); ``--opts KEY VALUE ...`` overrides its keys.
Writes one JSON line per query, in the order given, to stdout (or ``--output``):

    {"query": "q.png", "matches": [{"path": "g7.png", "distance": 0.1832}, ...]}

``matches``: the k nearest gallery images, nearest first; ``distance`` is fast-reid's cosine
distance, 1 - cos of the two features (0: the same feature, 2: opposite). The gallery is embedded
on every call; a service would keep its features (``fastreid_slr.retrieval``).
"""
import argparse
import json
import sys

import fastreid_slr  # noqa: F401  (compat fixes, the plugin's registries)
from fastreid.data.transforms import build_transforms
from fastreid_slr.deploy import load_trained
from fastreid_slr.retrieval import image_features, image_paths, nearest
from fastreid_slr.run import ConfigExtension, load_config
from procedural_reid import add_procedural_config


def query(cfg, weights, queries, gallery, k):
    """One dict per query image: its path and its ``k`` nearest gallery images with distances."""
    model = load_trained(cfg, weights)
    transforms = build_transforms(cfg, is_train=False)
    features = [image_features(model, paths, transforms, cfg.TEST.IMS_PER_BATCH, cfg.DATALOADER.NUM_WORKERS)
                for paths in (queries, gallery)]
    order, distances = nearest(*features, k)
    return [{"query": path, "matches": [{"path": gallery[j], "distance": round(float(d), 6)}
                                        for j, d in zip(row, row_distances)]}
            for path, row, row_distances in zip(queries, order, distances)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queries", nargs="+", help="query image files or folders")
    parser.add_argument("--gallery", nargs="+", required=True, help="gallery image files or folders")
    parser.add_argument("--config-file", required=True, help="the config the model was trained with")
    parser.add_argument("--weights", required=True, help="a checkpoint of that model (e.g. model_final.pth)")
    parser.add_argument("-k", type=int, default=10, help="gallery images per query (default 10)")
    parser.add_argument("--output", help="write the JSON lines here instead of stdout")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE", help="config overrides")
    args = parser.parse_args(argv)
    queries, gallery = image_paths(args.queries), image_paths(args.gallery)
    if not queries or not gallery:
        parser.error(f"no image found in {'the queries' if not queries else '--gallery'}")
    cfg = load_config(args, (ConfigExtension(add_procedural_config),))
    lines = query(cfg, args.weights, queries, gallery, args.k)
    out = open(args.output, "w") if args.output else sys.stdout
    try:
        out.writelines(json.dumps(line) + "\n" for line in lines)
    finally:
        if out is not sys.stdout:
            out.close()


if __name__ == "__main__":
    main()
