"""CA-Jaccard here against the authors' own function, on small random data: max |Δ| over all pairs.

    git -C CA-Jaccard show HEAD:caj/utils/caj_rerank.py > /tmp/caj_rerank.py   # github.com/chenyiyuu/CA-Jaccard
    python experiments/ca_jaccard_vs_authors.py --authors /tmp/caj_rerank.py

Their ``compute_jaccard_distance(features, cam_labels, epoch, args)`` (dense N×N; numpy and torch
on the CPU) is imported from the file given, unchanged, and called as their train_caj.py calls
it: unit-norm features, CKRNNs and CLQE on, their default sizes, an epoch after the first. Ours
is ``slr_refine.jaccard_distance(..., variant="fastreid", cameras=...)``, whose kernel is theirs
(``slr_refine/ca_jaccard.py``). Two data sets: every camera large enough for its lists, and the
same with cameras of 3 and 2 images (fewer than k1_intra + 1, and than k2_intra), where their lists
run on into other cameras and ours stop. Ours with ABMT's kernel is shown for scale. Prints one
``RESULT {json}`` line.
"""
import argparse
import contextlib
import importlib.util
import io
import json

import numpy as np

from slr_refine import jaccard_distance, normalize_features, to_dense_distance

SIZES = {"k1_intra": 5, "k1_inter": 20, "k2_intra": 3, "k2_inter": 3}  # their train_caj.py defaults


def load_authors(path):
    spec = importlib.util.spec_from_file_location("caj_rerank", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_jaccard_distance


def random_people(seed, camera_sizes, dim=32, people=25):
    """Unit features of ``people`` identities across cameras that shift their images; camera ids."""
    rng = np.random.default_rng(seed)
    cameras = rng.permutation(np.repeat(np.arange(len(camera_sizes)), camera_sizes))
    look, light = rng.normal(size=(people, dim)), 0.5 * rng.normal(size=(len(camera_sizes), dim))
    raw = look[rng.integers(0, people, cameras.size)] + light[cameras] + 0.8 * rng.normal(size=(cameras.size, dim))
    return normalize_features(raw), cameras


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", required=True, help="their caj/utils/caj_rerank.py")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    theirs = load_authors(args.authors)
    settings = argparse.Namespace(k1=30, k2=6, ckrnns=True, clqe=True, **SIZES)
    result = {}
    for name, camera_sizes in (("cameras of 40-90 images", (90, 70, 50, 40)),
                               ("cameras of 3 and 2 images too", (90, 70, 50, 3, 2))):
        features, cameras = random_people(args.seed, camera_sizes)
        with contextlib.redirect_stdout(io.StringIO()):  # their progress prints
            reference = theirs(features, cam_labels=cameras, epoch=1, args=settings)
        row = {}
        for variant in ("fastreid", "abmt"):
            ours = to_dense_distance(jaccard_distance(features, variant=variant, cameras=cameras, **SIZES))
            row[f"max_abs_diff_{variant}"] = float(np.abs(ours - reference).max())
            row[f"pairs_differing_by_1e-5_{variant}"] = int((np.abs(ours - reference) > 1e-5).sum())
        row["stored_pairs_fraction"] = float((reference < 1).mean())
        result[name] = row
        print(f"{name} (N={len(features)}): " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
