"""One epoch's pseudo-label step at Market scale: ours against fast-reid's dense reference.

    python benchmarks/pseudo_labels.py                       # N=12,936 (Market-1501 train), D=4,096
    python benchmarks/pseudo_labels.py --n 32621 --dim 4096 --source 12936   # MSMT17 train <- Market
    python benchmarks/pseudo_labels.py --n 100000 --dim 256  # no dense reference (40 GB a matrix)

D=4,096 is what the teacher gives: two 2,048-d branches, concatenated. Synthetic teacher features
(identities in families of look-alikes, camera offsets, per-identity noise, ambiguous images) for
two consecutive epochs. Each measured step runs in its own process, so one step's peak RSS (the
kernel's VmHWM high-water mark) cannot leak into another's; our processes import only the
framework-free engine ``slr_refine`` (no torch, no fast-reid: ~0.9 GB less). Numba kernels are compiled (or
loaded from cache), and a GPU index's CUDA context made, on a tiny input before the clock starts.

Fair timing: every process, ours and the reference, gets the same ``--threads`` (OpenMP, BLAS,
numba, torch and faiss alike; default: all cores), and each timed step runs ``--repeats`` times
(default 3) in fresh processes; tables report the median. With CUDA (faiss-gpu) our step also
runs with the kNN on the GPU, in the same table. Timings are wall-clock on whatever the machine
gives: a busy machine flatters whichever side suffers less from it, so compare on a quiet one.

``--source M`` adds ABMT's source term (λ = ``--source-weight``) to both sides' timed path: M
synthetic source images of other identities; ours is a flat faiss search plus a sparse update,
the reference a dense torch N×M distance added to its dense N×N matrix.

The comparison with the reference is on fast-reid's Jaccard (``variant="fastreid"``: fast-reid's
own function is the reference). Our step also runs with ABMT's Jaccard (``variant="abmt"``, the
paper configs'), with the same k1, k2, eps and source term: its times, and the agreement (ARI) of its
labels with the fast-reid variant's, for information. The reference runs only when its estimated
peak memory (``reference_peak_gb``) fits in the memory available when the benchmark starts.

Last line: ``speedup_vs_reference=<x> labels_identical=<bool> gpu_labels_identical=<bool>
refine_share=<f> peak_rss_gb=<GB>``; ``--json PATH`` writes every number.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


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

def _faiss_threads():
    """faiss's OpenMP pool, sized like every other pool of this process (``OMP_NUM_THREADS``)."""
    import faiss

    faiss.omp_set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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


def child_ours_cluster(work, tag, eps, use_gpu=False, source_weight=0.0, variant="fastreid"):
    """Our kNN alone, then Jaccard (its kNN included), the source term when given, and DBSCAN;
    the kNN on GPU 0 with use_gpu; ``variant`` of the Jaccard distance (with "abmt", the farthest
    search of its row scale is also timed alone)."""
    import scipy.sparse as sp

    import slr_refine as refine
    from slr_refine.distance import farthest_squared_distances
    _faiss_threads()
    name = ("ours_gpu" if use_gpu else "ours") + ("_abmt" if variant == "abmt" else "")
    features = np.load(work / f"features_{tag}.npy")
    warm_up = np.random.default_rng(0).normal(size=(64, 8))
    refine.cluster_dbscan(refine.jaccard_distance(warm_up, use_gpu=use_gpu, variant=variant), eps)  # JIT, CUDA
    baseline = _rss_now_gb()
    with warnings.catch_warnings(record=True) as fallbacks:
        warnings.simplefilter("always", RuntimeWarning)
        start = time.perf_counter()
        refine.knn(refine.normalize_features(features), 30, use_gpu=use_gpu)
        knn_s = time.perf_counter() - start
        start = time.perf_counter()
        if variant == "abmt":
            farthest_squared_distances(refine.normalize_features(features), use_gpu=use_gpu)
        farthest_s = time.perf_counter() - start
        start = time.perf_counter()
        jaccard = refine.jaccard_distance(features, k1=30, k2=6, use_gpu=use_gpu, variant=variant)
        jaccard_s = time.perf_counter() - start
        start = time.perf_counter()
        dist, absent = jaccard, refine.AbsentPairs()
        if source_weight:
            source_term, _ = refine.source_distances(features, np.load(work / "features_source.npy"), use_gpu=use_gpu)
            dist, absent = refine.add_source_term(jaccard, source_term, source_weight)
        source_s = time.perf_counter() - start
    start = time.perf_counter()
    labels = refine.cluster_dbscan(dist, eps, min_samples=4, absent=absent)
    dbscan_s = time.perf_counter() - start
    peak = _peak_rss_gb()
    np.save(work / f"labels_{name}_{tag}.npy", labels)
    if name == "ours":
        sp.save_npz(work / f"jaccard_ours_{tag}.npz", jaccard, compressed=False)
    fallback = [str(w.message) for w in fallbacks if "searching on the CPU" in str(w.message)]
    knn_device = ("CPU (GPU fallback: " + fallback[0] + ")" if fallback else "GPU 0") if use_gpu else "CPU"
    return {"knn_s": knn_s, "farthest_s": farthest_s, "jaccard_s": jaccard_s, "source_s": source_s,
            "dbscan_s": dbscan_s, "peak_rss_gb": peak,
            "rss_over_inputs_gb": peak - baseline, "nnz_per_row": dist.nnz / dist.shape[0],
            "clusters": int(labels.max()) + 1, "outliers": int((labels < 0).sum()), "knn_device": knn_device}


def _dense_source_term(target, source, chunk=1024):
    """ABMT's d_s the dense way (its own code's): N×M squared distances, min over the source."""
    import torch

    nearest = torch.cat([torch.cdist(target[i:i + chunk], source).pow(2).min(dim=1).values
                         for i in range(0, len(target), chunk)])
    distance = 1 - torch.exp(-nearest)
    return (distance / distance.max()).numpy().astype(np.float32)


def child_reference_cluster(work, tag, eps, source_weight=0.0):
    import scipy.sparse as sp
    import torch
    from fastreid.utils.compute_dist import compute_jaccard_distance
    from sklearn.cluster import DBSCAN

    _faiss_threads()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    features = torch.nn.functional.normalize(torch.from_numpy(np.load(work / f"features_{tag}.npy")), dim=1)
    baseline = _rss_now_gb()
    start = time.perf_counter()
    dense = compute_jaccard_distance(features, k1=30, k2=6, search_option=3)  # 3 = its CPU faiss branch
    jaccard_s = time.perf_counter() - start
    start = time.perf_counter()
    combined = dense
    if source_weight:
        source = torch.nn.functional.normalize(torch.from_numpy(np.load(work / "features_source.npy")), dim=1)
        d_s, lam = _dense_source_term(features, source), np.float32(source_weight)
        combined = (np.float32(1) - lam) * dense + lam * (d_s[:, None] + d_s[None, :])
    source_s = time.perf_counter() - start
    start = time.perf_counter()
    labels = DBSCAN(eps=eps, min_samples=4, metric="precomputed").fit_predict(combined)
    dbscan_s = time.perf_counter() - start
    peak = _peak_rss_gb()
    np.save(work / f"labels_reference_{tag}.npy", labels)

    ours = sp.load_npz(work / f"jaccard_ours_{tag}.npz").tocoo()  # after the peak was read
    dense_ours_diff = np.abs(dense[ours.row, ours.col] - ours.data).max()
    absent = np.ones(dense.shape, dtype=bool)
    absent[ours.row, ours.col] = False
    absent_diff = np.abs(dense[absent] - 1.0).max() if absent.any() else 0.0
    return {"jaccard_s": jaccard_s, "source_s": source_s, "dbscan_s": dbscan_s, "peak_rss_gb": peak,
            "rss_over_inputs_gb": peak - baseline, "max_abs_diff": float(max(dense_ours_diff, absent_diff)), "clusters": int(labels.max()) + 1,
            "outliers": int((labels < 0).sum())}


def child_ours_refine(work, alpha):
    import scipy.sparse as sp

    import slr_refine as refine
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

    import slr_refine as refine
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


class ChildKilled(RuntimeError):
    """A step's process ended by a signal (the kernel's out-of-memory killer sends SIGKILL)."""


def run_child(name, work, threads, **kwargs):
    """Run one step in a fresh interpreter with ``threads`` threads in every pool; its last stdout
    line is the JSON result."""
    command = [sys.executable, __file__, "--child", name, "--work", str(work), "--child-args", json.dumps(kwargs)]
    env = dict(os.environ, **{variable: str(threads) for variable in THREAD_VARIABLES})
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode < 0:
        raise ChildKilled(f"step {name} was killed by signal {-done.returncode} (9: out of memory?)")
    if done.returncode != 0:
        raise RuntimeError(f"step {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_median(name, work, threads, repeats, **kwargs):
    """``run_child`` ``repeats`` times: the median of each timing (``*_s``), the rest from the last run."""
    runs = [run_child(name, work, threads, **kwargs) for _ in range(repeats)]
    timings = {key: statistics.median(run[key] for run in runs) for key in runs[-1] if key.endswith("_s")}
    return {**runs[-1], **timings, "runs": len(runs)}


def reference_peak_gb(n, dim, source):
    """The dense reference's estimated peak RSS, GB. fast-reid's Jaccard holds two N×N float32
    matrices at once (V beside its query expansion, then V beside the distances) and a boolean
    N×N; the source term's ``(1-λ)·J + λ·(d_i + d_j)`` three more beside J. Plus the features
    (float32) and ~1 GB of interpreter, torch and sklearn (measured: 2.68 GB at N=12,936, D=4,096,
    no source term, against 2.6 GB estimated)."""
    matrix = 4 * n * n / 2**30
    return (4.0 if source else 2.25) * matrix + 4 * n * dim / 2**30 + 1.0


def available_memory_gb() -> float:
    """MemAvailable of /proc/meminfo: what this machine can give a new process now."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    raise RuntimeError("MemAvailable missing from /proc/meminfo")


def gpu_visible() -> bool:
    """faiss has GPU indexes and sees a GPU (what our kNN's ``use_gpu`` needs)."""
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


# ---------------------------------------------------------------------------------- the report

def _cell(result, key, digits=2):
    return f"{result[key]:.{digits}f}" if result else "-"


def print_table(ours, gpu, reference, abmt, with_source):
    print("\n| step (median s) | ours, CPU kNN | ours, GPU kNN | fast-reid reference | reference / ours CPU "
          "| ours, ABMT's Jaccard, CPU kNN |")
    print("|---|---|---|---|---|---|")
    rows = [("exact kNN (faiss flat, k=30)", "knn_s"), ("farthest search (ABMT's row scale)", "farthest_s"),
            ("k-reciprocal Jaccard, its searches included", "jaccard_s"), ("source term (--source)", "source_s"),
            ("DBSCAN", "dbscan_s"), ("Jaccard (+ source term) + DBSCAN", "total_s")]
    if not with_source:
        rows = [row for row in rows if row[1] != "source_s"]
    if not abmt:
        rows = [row for row in rows if row[1] != "farthest_s"]
    for title, key in rows:
        ratio = f"{reference[key] / ours[key]:.1f}x" if reference and key in reference else "-"
        ref = _cell(reference, key) if reference and key in reference else "-"
        ours_cell = "-" if key == "farthest_s" else _cell(ours, key)
        gpu_cell = "-" if key == "farthest_s" else _cell(gpu, key)
        print(f"| {title} | {ours_cell} | {gpu_cell} | {ref} | {ratio} | {_cell(abmt, key)} |")
    if gpu:
        print(f"GPU row: kNN on {gpu['knn_device']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=12936)
    parser.add_argument("--dim", type=int, default=4096, help="feature size (the teacher's: 2 x 2048)")
    parser.add_argument("--ids", type=int, default=None, help="identities (default n / 17.2, Market's ratio)")
    parser.add_argument("--eps", type=float, default=0.6)
    parser.add_argument("--source", type=int, default=0, help="source images for ABMT's source term (0: none)")
    parser.add_argument("--source-weight", type=float, default=0.1, help="λ of the source term")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of every process, both sides")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each timed step; the median is reported")
    parser.add_argument("--gpu-knn", choices=("auto", "on", "off"), default="auto",
                        help="also time our step with the kNN on the GPU (auto: when faiss sees one; on: even "
                             "without, to exercise the CPU fallback)")
    parser.add_argument("--skip-plain-hdbscan", action="store_true", help="skip the ~200 s plain HDBSCAN calls")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-abmt", action="store_true", help="skip our step with ABMT's Jaccard")
    parser.add_argument("--skip-refine", action="store_true", help="time the clustering only")
    parser.add_argument("--json", type=pathlib.Path, help="also write every number here")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=pathlib.Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.work, **json.loads(args.child_args))))
        return

    from sklearn.metrics import adjusted_rand_score

    n_ids = args.ids or max(2, round(args.n / 17.2))
    reference_gb, available_gb = reference_peak_gb(args.n, args.dim, args.source), available_memory_gb()
    run_reference = not args.skip_reference and reference_gb < available_gb
    run_gpu = args.gpu_knn == "on" or (args.gpu_knn == "auto" and gpu_visible())
    run_refine = not args.skip_refine
    run_plain = run_refine and not args.skip_plain_hdbscan
    threads, repeats = args.threads, args.repeats
    print(f"N={args.n} D={args.dim} identities={n_ids} eps={args.eps} alpha={args.alpha} k1=30 k2=6 min_samples=4 "
          f"source images={args.source} (λ {args.source_weight if args.source else 0}); "
          f"{threads} thread(s) per process on both sides, median of {repeats} run(s)")
    print(f"dense reference: ~{reference_gb:.1f} GB peak estimated, {available_gb:.1f} GB available: "
          f"{'runs' if run_reference else 'skipped'}")
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        truth = {}
        for tag, epoch in (("prev", 0), ("cur", 1)):
            features, truth[tag] = synthetic_features(args.n, args.dim, n_ids, epoch)
            np.save(work / f"features_{tag}.npy", features)
        weight = args.source_weight if args.source else 0.0
        if args.source:  # other identities, drawn like the target's
            np.save(work / "features_source.npy", synthetic_features(args.source, args.dim, n_ids, 1, seed=1)[0])
        del features
        cluster = {"eps": args.eps, "source_weight": weight}
        if run_refine:
            run_child("ours_cluster", work, threads, tag="prev", **cluster)
        ours = run_median("ours_cluster", work, threads, repeats, tag="cur", **cluster)
        gpu = run_median("ours_cluster", work, threads, repeats, tag="cur", use_gpu=True, **cluster) if run_gpu else None
        abmt = (None if args.skip_abmt else
                run_median("ours_cluster", work, threads, repeats, tag="cur", variant="abmt", **cluster))
        reference = reference_killed = None
        if run_reference:
            try:
                reference = run_median("reference_cluster", work, threads, repeats, tag="cur", **cluster)
            except ChildKilled as exc:  # the estimate was short: say so, keep our numbers
                reference_killed = str(exc)
        refined = run_median("ours_refine", work, threads, repeats, alpha=args.alpha) if run_refine else None
        plain = run_child("plain_hdbscan", work, threads, seed=0) if run_plain else None

        labels = {"ours_cur": np.load(work / "labels_ours_cur.npy")}
        if gpu:
            labels["gpu_cur"] = np.load(work / "labels_ours_gpu_cur.npy")
        if abmt:
            labels["abmt_cur"] = np.load(work / "labels_ours_abmt_cur.npy")
        if refined:
            labels["fast_hdbscan"] = np.load(work / "labels_fast_hdbscan.npy")
        if reference:
            labels["reference_cur"] = np.load(work / "labels_reference_cur.npy")
        if plain:
            labels["plain"] = np.load(work / "labels_plain_hdbscan.npy")
            labels["plain_permuted"] = np.load(work / "labels_plain_hdbscan_permuted.npy")

    for result in (ours, gpu, reference, abmt):
        if result:
            result["total_s"] = result["jaccard_s"] + result["source_s"] + result["dbscan_s"]
    print_table(ours, gpu, reference, abmt, with_source=bool(args.source))
    speedup = reference["total_s"] / ours["total_s"] if reference else None
    print(f"\npeak RSS, ours (Jaccard + DBSCAN process): {ours['peak_rss_gb']:.2f} GB "
          f"(+{ours['rss_over_inputs_gb']:.2f} GB over interpreter + features); sparse nnz/row {ours['nnz_per_row']:.0f}")
    if abmt:
        print(f"ABMT's Jaccard (same k1, k2, eps, source term): peak RSS {abmt['peak_rss_gb']:.2f} GB; "
              f"{abmt['clusters']} clusters / {abmt['outliers']} outliers against the fast-reid variant's "
              f"{ours['clusters']} / {ours['outliers']}, ARI {adjusted_rand_score(labels['ours_cur'], labels['abmt_cur']):.4f}")
    identical = gpu_identical = None
    if gpu:
        gpu_identical = bool(np.array_equal(labels["ours_cur"], labels["gpu_cur"]))
        print(f"DBSCAN labels, GPU kNN vs CPU kNN identical: {gpu_identical} (ARI "
              f"{adjusted_rand_score(labels['ours_cur'], labels['gpu_cur']):.4f})")
    if reference:
        print(f"peak RSS, reference (fast-reid + dense sklearn, with torch): {reference['peak_rss_gb']:.2f} GB "
              f"(+{reference['rss_over_inputs_gb']:.2f} GB over interpreter + features)")
        identical = bool(np.array_equal(labels["ours_cur"], labels["reference_cur"]))
        print(f"Jaccard max |ours - reference| over all N² pairs: {reference['max_abs_diff']:.2e}")
        print(f"DBSCAN labels identical: {identical} (ours {ours['clusters']} clusters / {ours['outliers']} outliers, "
              f"reference {reference['clusters']} / {reference['outliers']}; ARI "
              f"{adjusted_rand_score(labels['ours_cur'], labels['reference_cur']):.4f})")
    elif reference_killed:
        print(f"reference: {reference_killed}; estimated peak ~{reference_gb:.1f} GB of {available_gb:.1f} GB available")
    elif not args.skip_reference:
        print(f"reference: skipped: its dense N×N matrices would peak at ~{reference_gb:.1f} GB (estimated), "
              f"more than the {available_gb:.1f} GB this machine had available")
    else:
        print("reference: skipped (--skip-reference)")
    from slr_refine.quality import label_quality

    quality = label_quality(labels["ours_cur"], truth["cur"])
    print(f"DBSCAN vs truth: ARI {quality['ari']:.3f} (outliers as singletons), pair precision "
          f"{quality['pair_precision']:.3f} / recall {quality['pair_recall']:.3f}, {quality['identities']} identities")

    share = None
    if refined:
        refine_s = refined["seconds_projection"] + refined["seconds_soft_labels"] + refined["seconds_harden"]
        share = refine_s / ours["total_s"]
        print(f"\n| SLR step (alpha={args.alpha}, HDBSCAN min size 7) | seconds |")
        print("|---|---|")
        for key in ("projection", "soft_labels", "harden"):
            print(f"| {key} | {refined['seconds_' + key]:.3f} |")
        print(f"| total | {refine_s:.3f} ({share:.1%} of our Jaccard + DBSCAN) |")
        print(f"clusters {refined['clusters_before']} -> {refined['clusters_after']}, outliers "
              f"{refined['outliers_before']} -> {refined['outliers_after']}, distinct soft-label rows "
              f"{refined['distinct_rows']} of {args.n}, peak RSS {refined['peak_rss_gb']:.2f} GB")

    if plain:
        print(f"\nHDBSCAN on soft labels: plain hdbscan.HDBSCAN on all rows {plain['seconds']:.1f} s, "
              f"fast path {refined['seconds_harden']:.2f} s")
        print(f"ARI fast path vs plain call: {adjusted_rand_score(labels['fast_hdbscan'], labels['plain']):.4f}")
        print(f"ARI plain call vs plain call on row-permuted input: "
              f"{adjusted_rand_score(labels['plain'], labels['plain_permuted']):.4f}")
        print(f"outliers: fast {int((labels['fast_hdbscan'] < 0).sum())}, plain {int((labels['plain'] < 0).sum())}, "
              f"plain permuted {int((labels['plain_permuted'] < 0).sum())}")
    elif run_refine:
        print("\nplain HDBSCAN comparison: skipped (--skip-plain-hdbscan)")

    peak = max(result["peak_rss_gb"] for result in (ours, abmt, refined) if result)
    if args.json:
        args.json.write_text(json.dumps({
            "n": args.n, "dim": args.dim, "identities": n_ids, "threads": threads, "repeats": repeats,
            "ours_cpu_knn": ours, "ours_gpu_knn": gpu, "ours_abmt_jaccard": abmt, "reference": reference,
            "reference_peak_gb_estimated": reference_gb, "available_gb": available_gb, "refine": refined,
            "plain_hdbscan": plain, "speedup_vs_reference": speedup, "labels_identical": identical,
            "gpu_labels_identical": gpu_identical, "refine_share": share, "peak_rss_gb": peak}, indent=1))
    print(f"speedup_vs_reference={f'{speedup:.2f}' if reference else 'skipped'} "
          f"labels_identical={identical if reference else 'skipped'} "
          f"gpu_labels_identical={gpu_identical if gpu else 'skipped'} "
          f"refine_share={f'{share:.4f}' if refined else 'skipped'} peak_rss_gb={peak:.2f}")


if __name__ == "__main__":
    main()
