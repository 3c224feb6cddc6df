"""One epoch's pseudo-label step at Market scale: ours against fast-reid's dense reference.

    python benchmarks/pseudo_labels.py                       # N=12,936, D=2,048 (Market-1501 train)
    python benchmarks/pseudo_labels.py --n 100000 --dim 256  # no dense reference (40 GB a matrix)

Synthetic teacher features (identities in families of look-alikes, camera offsets, per-identity
noise, ambiguous images) for two consecutive epochs. Each measured step runs in its own process,
so one step's peak RSS (the kernel's VmHWM high-water mark) cannot leak into another's; our processes
import ``fastreid_slr.refine`` without the package's ``__init__`` (which loads torch and fast-reid,
~0.9 GB) because the framework-free module is what is measured. Numba kernels are compiled (or
loaded from cache) on a tiny input before the clock starts. Timings are wall-clock on whatever the
machine gives; ours and the reference run in the same invocation, so compare them with each other.

Last line: ``speedup_vs_reference=<x> labels_identical=<bool> refine_share=<f> peak_rss_gb=<GB>``.
"""
import argparse
import importlib
import json
import pathlib
import subprocess
import sys
import tempfile
import time
import types

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
DENSE_REFERENCE_MAX_N = 20000  # fast-reid holds three dense N×N float32 matrices


def _unit_rows(rng, n, dim):
    rows = rng.normal(size=(n, dim))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def synthetic_features(n, dim, n_ids, epoch, seed=0, improvement=0.9, n_cameras=6):
    """Teacher features of ``n`` images of ``n_ids`` identities at a given training epoch.

    Identities come in families of ~3 look-alikes (cosine 0.45 between their centres), each image
    carries its camera's offset and per-identity noise, and 20% of images mix in another
    identity (occlusion, two people in a box). The identity structure is fixed by ``seed``; with
    each epoch the noise and camera offsets shrink by ``improvement`` (the model learns), every
    image keeps half of its previous noise, identity centres drift a little, and an ambiguous
    image's mix of its two identities is redrawn (which one dominates can flip).

    Returns (features float32 (n, dim), identities (n,)).
    """
    rng = np.random.default_rng(seed)
    families = _unit_rows(rng, (n_ids + 2) // 3, dim)
    centers = np.sqrt(0.45) * families[rng.integers(0, families.shape[0], n_ids)] + np.sqrt(0.55) * _unit_rows(rng, n_ids, dim)
    cameras = 0.5 * _unit_rows(rng, n_cameras, dim)
    popularity = rng.lognormal(0, 0.6, n_ids)
    ids = rng.choice(n_ids, n, p=popularity / popularity.sum())
    ids[:n_ids] = np.arange(n_ids)  # every identity appears
    seen_by = [rng.choice(n_cameras, rng.integers(2, n_cameras + 1), replace=False) for _ in range(n_ids)]
    camera = np.array([rng.choice(seen_by[i]) for i in ids])
    sigma = 0.95 * rng.lognormal(0, 0.25, n_ids)[ids]
    ambiguous = np.flatnonzero(rng.random(n) < 0.2)
    other = rng.integers(0, n_ids, ambiguous.size)
    noise = _unit_rows(rng, n, dim)

    epoch_rng = np.random.default_rng([seed, 1])
    for _ in range(epoch):  # the same image's noise is correlated from one epoch to the next
        noise = np.sqrt(0.5) * noise + np.sqrt(0.5) * _unit_rows(epoch_rng, n, dim)
        centers = centers + 0.15 * _unit_rows(epoch_rng, n_ids, dim)
    mix = np.random.default_rng([seed, 2, epoch]).uniform(0.3, 0.7, ambiguous.size)[:, None]
    scale = improvement ** epoch
    features = centers[ids] + scale * cameras[camera] + scale * sigma[:, None] * noise
    features[ambiguous] += mix * (centers[other] - centers[ids[ambiguous]])
    return features.astype(np.float32), ids


# ---------------------------------------------------------------- child processes (one step each)

def _import_refine():
    """``fastreid_slr.refine`` without running ``fastreid_slr/__init__`` (torch, fast-reid)."""
    package = types.ModuleType("fastreid_slr")
    package.__path__ = [str(REPO / "fastreid_slr")]
    sys.modules["fastreid_slr"] = package
    return importlib.import_module("fastreid_slr.refine")


def _proc_status_gb(field):
    """VmHWM (peak) or VmRSS (now) of this process. Not ru_maxrss: Linux carries that high-water
    mark over from the parent through fork and exec, so every child would report the parent's."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20  # kB
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _peak_rss_gb():
    return _proc_status_gb("VmHWM")


def _rss_now_gb():
    return _proc_status_gb("VmRSS")


def child_ours_cluster(work, tag, eps):
    import scipy.sparse as sp

    refine = _import_refine()
    features = np.load(work / f"features_{tag}.npy")
    refine.cluster_dbscan(refine.jaccard_distance(np.random.default_rng(0).normal(size=(64, 8))), eps)  # JIT warm-up
    baseline = _rss_now_gb()
    start = time.perf_counter()
    dist = refine.jaccard_distance(features, k1=30, k2=6)
    jaccard_s = time.perf_counter() - start
    start = time.perf_counter()
    labels = refine.cluster_dbscan(dist, eps, min_samples=4)
    dbscan_s = time.perf_counter() - start
    peak = _peak_rss_gb()
    np.save(work / f"labels_ours_{tag}.npy", labels)
    sp.save_npz(work / f"jaccard_ours_{tag}.npz", dist, compressed=False)
    return {"jaccard_s": jaccard_s, "dbscan_s": dbscan_s, "peak_rss_gb": peak, "rss_over_inputs_gb": peak - baseline,
            "nnz_per_row": dist.nnz / dist.shape[0], "clusters": int(labels.max()) + 1,
            "outliers": int((labels < 0).sum())}


def child_reference_cluster(work, tag, eps):
    import scipy.sparse as sp
    import torch
    from fastreid.utils.compute_dist import compute_jaccard_distance
    from sklearn.cluster import DBSCAN

    torch.set_num_threads(2)
    features = torch.nn.functional.normalize(torch.from_numpy(np.load(work / f"features_{tag}.npy")), dim=1)
    baseline = _rss_now_gb()
    start = time.perf_counter()
    dense = compute_jaccard_distance(features, k1=30, k2=6, search_option=3)  # 3 = its CPU faiss branch
    jaccard_s = time.perf_counter() - start
    start = time.perf_counter()
    labels = DBSCAN(eps=eps, min_samples=4, metric="precomputed").fit_predict(dense)
    dbscan_s = time.perf_counter() - start
    peak = _peak_rss_gb()
    np.save(work / f"labels_reference_{tag}.npy", labels)

    ours = sp.load_npz(work / f"jaccard_ours_{tag}.npz").tocoo()  # after the peak was read
    dense_ours_diff = np.abs(dense[ours.row, ours.col] - ours.data).max()
    absent = np.ones(dense.shape, dtype=bool)
    absent[ours.row, ours.col] = False
    absent_diff = np.abs(dense[absent] - 1.0).max() if absent.any() else 0.0
    return {"jaccard_s": jaccard_s, "dbscan_s": dbscan_s, "peak_rss_gb": peak, "rss_over_inputs_gb": peak - baseline,
            "max_abs_diff": float(max(dense_ours_diff, absent_diff)), "clusters": int(labels.max()) + 1,
            "outliers": int((labels < 0).sum())}


def child_ours_refine(work, alpha):
    import scipy.sparse as sp

    refine = _import_refine()
    prev, cur = np.load(work / "labels_ours_prev.npy"), np.load(work / "labels_ours_cur.npy")
    warm_up = refine.SLRRefiner()
    warm_up.step(np.arange(40) % 5)
    warm_up.step(np.arange(40) % 4)
    baseline = _rss_now_gb()
    refiner = refine.SLRRefiner(alpha=alpha)
    refiner.step(prev)
    result = refiner.step(cur)
    peak = _peak_rss_gb()
    sp.save_npz(work / "soft_labels.npz", result.soft_labels, compressed=False)
    np.save(work / "labels_fast_hdbscan.npy", result.hard_labels)
    rows = sp.csr_matrix(result.soft_labels)
    distinct = len({(rows.indices[a:b].tobytes(), rows.data[a:b].tobytes()) for a, b in zip(rows.indptr[:-1], rows.indptr[1:]) if b > a})
    return {**result.stats, "peak_rss_gb": peak, "rss_over_inputs_gb": peak - baseline, "distinct_rows": distinct}


def child_plain_hdbscan(work, seed):
    import scipy.sparse as sp

    refine = _import_refine()
    soft = sp.load_npz(work / "soft_labels.npz")
    start = time.perf_counter()
    plain = refine.harden(soft, plain_hdbscan=True)
    seconds = time.perf_counter() - start
    permutation = np.random.default_rng(seed).permutation(soft.shape[0])
    plain_permuted = refine.harden(soft[permutation], plain_hdbscan=True)[np.argsort(permutation)]
    np.save(work / "labels_plain_hdbscan.npy", plain)
    np.save(work / "labels_plain_hdbscan_permuted.npy", plain_permuted)
    return {"seconds": seconds}


CHILDREN = {"ours_cluster": child_ours_cluster, "reference_cluster": child_reference_cluster,
            "ours_refine": child_ours_refine, "plain_hdbscan": child_plain_hdbscan}


def run_child(name, work, **kwargs):
    """Run one step in a fresh interpreter; its last stdout line is the JSON result."""
    command = [sys.executable, __file__, "--child", name, "--work", str(work), "--child-args", json.dumps(kwargs)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"step {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------- the report

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=12936)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--ids", type=int, default=None, help="identities (default n / 17.2, Market's ratio)")
    parser.add_argument("--eps", type=float, default=0.6)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--skip-plain-hdbscan", action="store_true", help="skip the ~200 s plain HDBSCAN calls")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=pathlib.Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.work, **json.loads(args.child_args))))
        return

    from sklearn.metrics import adjusted_rand_score

    n_ids = args.ids or max(2, round(args.n / 17.2))
    run_reference = not args.skip_reference and args.n <= DENSE_REFERENCE_MAX_N
    dense_gb = 3 * 4 * args.n**2 / 2**30
    print(f"N={args.n} D={args.dim} identities={n_ids} eps={args.eps} alpha={args.alpha} k1=30 k2=6 min_samples=4")
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        truth = {}
        for tag, epoch in (("prev", 0), ("cur", 1)):
            features, truth[tag] = synthetic_features(args.n, args.dim, n_ids, epoch)
            np.save(work / f"features_{tag}.npy", features)
        del features
        run_child("ours_cluster", work, tag="prev", eps=args.eps)
        ours = run_child("ours_cluster", work, tag="cur", eps=args.eps)
        reference = run_child("reference_cluster", work, tag="cur", eps=args.eps) if run_reference else None
        refined = run_child("ours_refine", work, alpha=args.alpha)
        plain = None if args.skip_plain_hdbscan else run_child("plain_hdbscan", work, seed=0)

        labels = {name: np.load(work / f"labels_{name}.npy") for name in ("ours_cur", "fast_hdbscan")}
        if reference:
            labels["reference_cur"] = np.load(work / "labels_reference_cur.npy")
        if plain:
            labels["plain"] = np.load(work / "labels_plain_hdbscan.npy")
            labels["plain_permuted"] = np.load(work / "labels_plain_hdbscan_permuted.npy")

    ours_total = ours["jaccard_s"] + ours["dbscan_s"]
    rows = [("k-reciprocal Jaccard", "jaccard_s"), ("DBSCAN", "dbscan_s")]
    print("\n| step | ours s | reference s | ratio |")
    print("|---|---|---|---|")
    for title, key in rows:
        ref_s = f"{reference[key]:.2f}" if reference else "skipped"
        ratio = f"{reference[key] / ours[key]:.1f}x" if reference else "-"
        print(f"| {title} | {ours[key]:.2f} | {ref_s} | {ratio} |")
    speedup = (reference["jaccard_s"] + reference["dbscan_s"]) / ours_total if reference else None
    print(f"| Jaccard + DBSCAN | {ours_total:.2f} | "
          f"{reference['jaccard_s'] + reference['dbscan_s']:.2f} | {speedup:.1f}x |" if reference else
          f"| Jaccard + DBSCAN | {ours_total:.2f} | skipped | - |")
    print(f"\npeak RSS, ours (Jaccard + DBSCAN process): {ours['peak_rss_gb']:.2f} GB "
          f"(+{ours['rss_over_inputs_gb']:.2f} GB over interpreter + features); sparse nnz/row {ours['nnz_per_row']:.0f}")
    if reference:
        print(f"peak RSS, reference (fast-reid + dense sklearn, with torch): {reference['peak_rss_gb']:.2f} GB "
              f"(+{reference['rss_over_inputs_gb']:.2f} GB over interpreter + features)")
        identical = bool(np.array_equal(labels["ours_cur"], labels["reference_cur"]))
        print(f"Jaccard max |ours - reference| over all N² pairs: {reference['max_abs_diff']:.2e}")
        print(f"DBSCAN labels identical: {identical} (ours {ours['clusters']} clusters / {ours['outliers']} outliers, "
              f"reference {reference['clusters']} / {reference['outliers']}; ARI "
              f"{adjusted_rand_score(labels['ours_cur'], labels['reference_cur']):.4f})")
    else:
        identical = None
        print(f"reference: skipped (three dense N×N float32 matrices = {dense_gb:.0f} GB)")
    clustered = labels["ours_cur"] >= 0
    print(f"DBSCAN vs truth: ARI {adjusted_rand_score(truth['cur'][clustered], labels['ours_cur'][clustered]):.3f} "
          f"on clustered samples, {truth['cur'].max() + 1} identities")

    refine_s = refined["seconds_projection"] + refined["seconds_soft_labels"] + refined["seconds_harden"]
    share = refine_s / ours_total
    print(f"\n| SLR step (alpha={args.alpha}, HDBSCAN min size 7) | seconds |")
    print("|---|---|")
    for key in ("projection", "soft_labels", "harden"):
        print(f"| {key} | {refined['seconds_' + key]:.3f} |")
    print(f"| total | {refine_s:.3f} ({share:.1%} of our Jaccard + DBSCAN) |")
    print(f"clusters {refined['clusters_before']} -> {refined['clusters_after']}, outliers {refined['outliers_before']} -> "
          f"{refined['outliers_after']}, distinct soft-label rows {refined['distinct_rows']} of {args.n}, "
          f"peak RSS {refined['peak_rss_gb']:.2f} GB")

    if plain:
        print(f"\nHDBSCAN on soft labels: plain hdbscan.HDBSCAN on all rows {plain['seconds']:.1f} s, "
              f"fast path {refined['seconds_harden']:.2f} s")
        print(f"ARI fast path vs plain call: {adjusted_rand_score(labels['fast_hdbscan'], labels['plain']):.4f}")
        print(f"ARI plain call vs plain call on row-permuted input: "
              f"{adjusted_rand_score(labels['plain'], labels['plain_permuted']):.4f}")
        print(f"outliers: fast {int((labels['fast_hdbscan'] < 0).sum())}, plain {int((labels['plain'] < 0).sum())}, "
              f"plain permuted {int((labels['plain_permuted'] < 0).sum())}")
    else:
        print("\nplain HDBSCAN comparison: skipped (--skip-plain-hdbscan)")

    peak = max(ours["peak_rss_gb"], refined["peak_rss_gb"])
    print(f"speedup_vs_reference={f'{speedup:.2f}' if reference else 'skipped'} "
          f"labels_identical={identical if reference else 'skipped'} refine_share={share:.4f} peak_rss_gb={peak:.2f}")


if __name__ == "__main__":
    main()
