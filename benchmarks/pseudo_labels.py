"""One epoch's clustering step (the pseudo labels): ours on each search backend, beside the
previous engine and fast-reid's dense reference.

    python benchmarks/pseudo_labels.py --n 12936 --dim 4096 --source 16522 --previous /tmp/base
        # Market scale: Market-1501's 12,936 training images, DukeMTMC's 16,522 as the source term's
    python benchmarks/pseudo_labels.py --n 32621 --dim 4096 --source 12936 --previous /tmp/base \\
        --skip-plain-hdbscan --repeats 1     # MSMT17 scale: its 32,621 training images <- Market's
    python benchmarks/pseudo_labels.py --n 1500 --dim 64 --source 500 --repeats 1   # a smoke run
    ... --cameras 15      # also CA-Jaccard on 15 synthetic cameras (MSMT17 has 15)

``--previous PATH``: an older checkout of this repository (``git worktree add /tmp/base <commit>``).
D=4,096 is what the teacher gives: two 2,048-d branches, concatenated.

What is compared, all at k1 30, k2 6, eps ``--eps``, min_samples 4 and the same source term
(``--source M`` synthetic source images of other identities, λ ``--source-weight``; none without):

- ours: ``slr_refine.clustering_distance`` + ``slr_refine.cluster_dbscan``, for each Jaccard variant
  ("fastreid": fast-reid's / SpCL's; "abmt": ABMT's, the paper configs'; with ``--cameras C`` also
  "fastreid-ca" / "abmt-ca": CA-Jaccard at its authors' sizes, over each variant's kernel, on the
  generator's C cameras) on each search backend:
  ``blas`` (numpy BLAS blocks) and ``faiss`` (flat indexes) on the CPU, and with ``--gpu`` torch on
  CUDA (``fastreid_slr.neighbour_search.TorchSearch``) and faiss on the GPU. One exact search gives
  every neighbour the step needs (the k nearest, ABMT's farthest row, the nearest source image),
  its ranks certified in float64, so every backend must give the blas backend's labels: checked
  per variant. Parts: search, Jaccard, source term, DBSCAN, and the total (the step timed whole).
- previous (``--previous PATH``): the same step with the engine found at PATH. One of the older API
  (its ``slr_refine`` has ``knn``) runs as it used to: ``jaccard_distance`` (its faiss kNN search and,
  abmt, its farthest search inside), ``source_distances`` (a third search), ``add_source_term``,
  ``cluster_dbscan``; its search row is its kNN (+ farthest) search timed alone, before that call,
  so the row is not part of its total (one of the one-search API runs as ours does, on blas). Its
  labels must equal ours (blas), variant by variant: how the project shows that a speed change
  keeps the labels.
- the dense reference: fast-reid's own ``compute_jaccard_distance`` (search_option 3: its CPU faiss),
  the dense source term (torch, N×M) and sklearn's DBSCAN on the dense matrix, fastreid variant
  only: its labels against ours (blas), and max |Δ| of the Jaccard matrix over all N² pairs. It
  runs only when its estimated peak memory (``reference_peak_gb``) fits in the memory available
  when the benchmark starts.

Then SLR's refinement of two consecutive epochs' labels (ours, blas, fastreid variant) and, unless
``--skip-plain-hdbscan``, a plain ``hdbscan.HDBSCAN`` call on its soft labels against our fast path.

Synthetic teacher features (identities in families of look-alikes, camera offsets, per-identity
noise, ambiguous images) for two consecutive epochs. Each measured step runs in its own process,
so one step's peak RSS (the kernel's VmHWM high-water mark) cannot leak into another's; our
processes import only the framework-free engine ``slr_refine`` (no torch, no fast-reid), except the
torch backend's. Before the clock starts, our processes compile (or load from cache) the numba
kernels (``slr_refine.warm_up.compile_kernels``) and make the backend's first call (a CUDA context,
faiss's GPU resources) on a tiny input; the previous version's process runs its own step on a
tiny input (its kernels differ).

Fair timing: every process gets the same ``--threads`` (OpenMP, BLAS, numba, torch and faiss
alike; default: all cores), and each timed step runs ``--repeats`` times (default 3) in fresh
processes; tables report the median. Timings are wall-clock on whatever the machine gives: a busy
machine flatters whichever side suffers less from it, so compare on a quiet one.

Last line: ``abmt_over_fastreid=<x> faiss_over_blas=<x> previous_over_ours_fastreid=<x|skipped>
previous_over_ours_abmt=<x|skipped> labels_identical_across_searches=<bool>
labels_identical_to_previous=<bool|skipped> speedup_vs_reference=<x|skipped>
labels_identical_to_reference=<bool|skipped> refine_share=<f|skipped> ca_over_blind_abmt=<x|skipped>
peak_rss_gb=<GB>``: totals of the clustering step, ours on blas unless named (faiss_over_blas: the
abmt variant's; ca_over_blind_abmt: CA-Jaccard's over the camera-blind, abmt kernel; peak_rss_gb:
the highest of our CPU processes, the refinement's included). ``--json PATH`` writes every number.
"""
import argparse
import importlib
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

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
K1, K2, MIN_SAMPLES = 30, 6, 4
VARIANTS = ("fastreid", "abmt")
# CA-Jaccard over a variant's kernel (``--cameras``): "<variant>-ca".
CAMERA_AWARE = "-ca"
# Search backends of our step, in table order: the two CPU ones always, the GPU ones with --gpu.
BACKENDS = {"blas": "blas", "faiss": "faiss", "torch_cuda": "torch CUDA", "faiss_gpu": "faiss GPU"}
CPU_BACKENDS = ("blas", "faiss")




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

    Returns (features float32 (n, dim), identities (n,), cameras (n,)).
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
    return features.astype(np.float32), ids, camera


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




def _search_backend(name):
    """Our step's search backend ``name`` (a key of ``BACKENDS``), GPU ones on device 0."""
    import slr_refine as refine

    if name == "torch_cuda":  # the plugin's (it imports torch and fast-reid)
        import torch
        from fastreid_slr.neighbour_search import TorchSearch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        return TorchSearch("cuda")
    return {"blas": refine.BlasSearch, "faiss": refine.FaissSearch,
            "faiss_gpu": lambda: refine.FaissSearch(gpu_device=0)}[name]()


def _search_device(backend, fallbacks):
    """Where the timed search ran: a GPU backend that fell back to the CPU says so, with why."""
    if backend in CPU_BACKENDS:
        return "CPU"
    if fallbacks:
        return f"CPU (GPU fallback: {fallbacks[0]})"
    if backend == "torch_cuda":
        import torch

        return f"CUDA 0 ({torch.cuda.get_device_name(0)})"
    return "GPU 0"


def _clustering_step(refine, features, source, variant, source_weight, eps, backend, cameras=None):
    """The clustering step of the one-search API: (labels, distance, seconds of each part); a
    "-ca" variant is CA-Jaccard on ``cameras``."""
    camera_aware = variant.endswith(CAMERA_AWARE)
    start = time.perf_counter()
    distance = refine.clustering_distance(features, k1=K1, k2=K2, variant=variant.removesuffix(CAMERA_AWARE),
                                          source=source, source_weight=source_weight, backend=backend,
                                          cameras=cameras if camera_aware else None)
    dbscan_start = time.perf_counter()
    labels = refine.cluster_dbscan(distance.dist, eps, min_samples=MIN_SAMPLES, absent=distance.absent)
    end = time.perf_counter()
    return labels, distance.dist, {
        "search_s": distance.seconds["search"], "jaccard_s": distance.seconds["jaccard"],
        "source_s": distance.seconds["source_term"], "dbscan_s": end - dbscan_start, "total_s": end - start}


def _load_inputs(work, tag, source_weight):
    features = np.load(work / f"features_{tag}.npy")
    return features, np.load(work / "features_source.npy") if source_weight else None


def child_ours_cluster(work, tag, eps, backend, variant, source_weight=0.0):
    """Our step (``clustering_distance`` + ``cluster_dbscan``) with the ``variant`` Jaccard distance,
    the search on ``backend``."""
    import slr_refine as refine
    from slr_refine.warm_up import compile_kernels

    _faiss_threads()
    search = _search_backend(backend)
    features, source = _load_inputs(work, tag, source_weight)
    cameras = np.load(work / "cameras.npy") if variant.endswith(CAMERA_AWARE) else None
    compile_kernels()
    refine.search_neighbours(features[:64], 8, farthest=True, others=features[:16], backend=search,
                             cameras=np.arange(64) % 3, within=4, across=4)
    baseline = _rss_now_gb()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        labels, dist, seconds = _clustering_step(refine, features, source, variant, source_weight, eps, search,
                                                 cameras)
    peak = _peak_rss_gb()
    np.save(work / f"labels_ours_{backend}_{variant}_{tag}.npy", labels)
    fallbacks = [str(w.message) for w in caught if "searching on the CPU" in str(w.message)]
    return {**seconds, "peak_rss_gb": peak, "rss_over_inputs_gb": peak - baseline,
            "nnz_per_row": dist.nnz / dist.shape[0], "clusters": int(labels.max()) + 1,
            "outliers": int((labels < 0).sum()), "search_device": _search_device(backend, fallbacks)}


def _previous_step(refine, features, source, variant, source_weight, eps):
    """The clustering step of the older API (its ``slr_refine`` has ``knn``), timed as its benchmark
    did: its kNN (and, abmt, farthest) search alone, then ``jaccard_distance`` (which searches
    again), the source term (a third search) and DBSCAN. (labels, seconds)."""
    from slr_refine.distance import farthest_squared_distances

    full_columns = min(K1 + 1 if variant == "abmt" else K1, len(features))  # what its Jaccard searches
    start = time.perf_counter()
    refine.knn(refine.normalize_features(features), full_columns)
    knn_s = time.perf_counter() - start
    start = time.perf_counter()
    if variant == "abmt":
        farthest_squared_distances(refine.normalize_features(features))
    farthest_s = time.perf_counter() - start
    start = time.perf_counter()
    jaccard = refine.jaccard_distance(features, k1=K1, k2=K2, variant=variant)
    jaccard_s = time.perf_counter() - start
    start = time.perf_counter()
    dist, absent = jaccard, refine.AbsentPairs()
    if source_weight:
        source_term, _ = refine.source_distances(features, source)
        dist, absent = refine.add_source_term(jaccard, source_term, source_weight)
    source_s = time.perf_counter() - start
    start = time.perf_counter()
    labels = refine.cluster_dbscan(dist, eps, min_samples=MIN_SAMPLES, absent=absent)
    dbscan_s = time.perf_counter() - start
    return labels, {"knn_s": knn_s, "farthest_s": farthest_s, "search_s": knn_s + farthest_s,
                    "jaccard_s": jaccard_s, "source_s": source_s, "dbscan_s": dbscan_s,
                    "total_s": jaccard_s + source_s + dbscan_s}


def child_previous_cluster(work, tag, eps, path, variant, source_weight=0.0):
    """The step with the engine of the checkout at ``path`` (first on sys.path): through the older
    API when it has ``knn`` (``_previous_step``), else as ours on its default (BLAS) search."""
    sys.path.insert(0, path)
    import slr_refine as refine

    if not pathlib.Path(refine.__file__).resolve().is_relative_to(pathlib.Path(path).resolve()):
        raise RuntimeError(f"slr_refine was imported from {refine.__file__}, not from {path}")
    _faiss_threads()
    features, source = _load_inputs(work, tag, source_weight)
    older_api = hasattr(refine, "knn")
    if older_api:
        tiny = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
        _previous_step(refine, tiny, tiny[:16], variant, source_weight, eps)  # its numba kernels
    else:
        importlib.import_module("slr_refine.warm_up").compile_kernels()
    baseline = _rss_now_gb()
    if older_api:
        labels, seconds = _previous_step(refine, features, source, variant, source_weight, eps)
    else:
        labels, _, seconds = _clustering_step(refine, features, source, variant, source_weight, eps, None)
    peak = _peak_rss_gb()
    np.save(work / f"labels_previous_{variant}_{tag}.npy", labels)
    return {**seconds, "peak_rss_gb": peak, "rss_over_inputs_gb": peak - baseline,
            "clusters": int(labels.max()) + 1, "outliers": int((labels < 0).sum()),
            "api": "knn + jaccard_distance (older)" if older_api else "clustering_distance (one search)",
            "engine": str(pathlib.Path(refine.__file__).parent)}


def _dense_source_term(target, source, chunk=1024):
    """ABMT's d_s the dense way (its own code's): N×M squared distances, min over the source."""
    import torch

    nearest = torch.cat([torch.cdist(target[i:i + chunk], source).pow(2).min(dim=1).values
                         for i in range(0, len(target), chunk)])
    distance = 1 - torch.exp(-nearest)
    return (distance / distance.max()).numpy().astype(np.float32)


def child_reference_cluster(work, tag, eps, source_weight=0.0):
    """fast-reid's dense step. After its peak is read, our Jaccard matrix (fastreid variant, blas)
    is computed here too, to compare the two over all N² pairs."""
    import torch
    from fastreid.utils.compute_dist import compute_jaccard_distance
    from sklearn.cluster import DBSCAN

    import slr_refine as refine

    _faiss_threads()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    raw = np.load(work / f"features_{tag}.npy")
    features = torch.nn.functional.normalize(torch.from_numpy(raw), dim=1)
    baseline = _rss_now_gb()
    start = time.perf_counter()
    dense = compute_jaccard_distance(features, k1=K1, k2=K2, search_option=3)  # 3 = its CPU faiss branch
    jaccard_s = time.perf_counter() - start
    start = time.perf_counter()
    combined = dense
    if source_weight:
        source = torch.nn.functional.normalize(torch.from_numpy(np.load(work / "features_source.npy")), dim=1)
        d_s, lam = _dense_source_term(features, source), np.float32(source_weight)
        combined = (np.float32(1) - lam) * dense + lam * (d_s[:, None] + d_s[None, :])
    source_s = time.perf_counter() - start
    start = time.perf_counter()
    labels = DBSCAN(eps=eps, min_samples=MIN_SAMPLES, metric="precomputed").fit_predict(combined)
    dbscan_s = time.perf_counter() - start
    peak = _peak_rss_gb()
    np.save(work / f"labels_reference_{tag}.npy", labels)

    ours = refine.jaccard_distance(raw, k1=K1, k2=K2, variant="fastreid").tocoo()
    dense_ours_diff = np.abs(dense[ours.row, ours.col] - ours.data).max()
    absent = np.ones(dense.shape, dtype=bool)
    absent[ours.row, ours.col] = False
    absent_diff = np.abs(dense[absent] - 1.0).max() if absent.any() else 0.0
    return {"jaccard_s": jaccard_s, "source_s": source_s, "dbscan_s": dbscan_s,
            "total_s": jaccard_s + source_s + dbscan_s, "peak_rss_gb": peak, "rss_over_inputs_gb": peak - baseline,
            "max_abs_diff": float(max(dense_ours_diff, absent_diff)), "clusters": int(labels.max()) + 1,
            "outliers": int((labels < 0).sum())}


def child_ours_refine(work, alpha, labels):
    """SLR's step on two consecutive epochs' labels ``labels_<labels>_{prev,cur}.npy``."""
    import scipy.sparse as sp

    import slr_refine as refine
    prev, cur = np.load(work / f"labels_{labels}_prev.npy"), np.load(work / f"labels_{labels}_cur.npy")
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


def child_devices(work):
    """What the GPU backends would find: torch's CUDA, faiss's GPUs."""
    import faiss

    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    return {"torch_cuda": cuda, "faiss_gpus": faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0}


CHILDREN = {"ours_cluster": child_ours_cluster, "previous_cluster": child_previous_cluster,
            "reference_cluster": child_reference_cluster, "ours_refine": child_ours_refine,
            "plain_hdbscan": child_plain_hdbscan, "devices": child_devices}


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



# ---------------------------------------------------------------------------------- the report

ROWS = (("search (ours: every neighbour, one pass)", "search_s"), ("Jaccard", "jaccard_s"),
        ("source term", "source_s"), ("DBSCAN", "dbscan_s"), ("total: the clustering step", "total_s"))


def print_table(columns, with_source):
    """``columns``: (title, result) pairs; rows: the parts, peak RSS, clusters / outliers."""
    print("\n| median s | " + " | ".join(title for title, _ in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for title, key in ROWS:
        if key == "source_s" and not with_source:
            continue
        cells = [f"{result[key]:.2f}" if key in result else "-" for _, result in columns]
        print(f"| {title} | " + " | ".join(cells) + " |")
    print("| peak RSS (GB) | " + " | ".join(f"{result['peak_rss_gb']:.2f}" for _, result in columns) + " |")
    print("| clusters / outliers | " + " | ".join(f"{result['clusters']} / {result['outliers']}"
                                                  for _, result in columns) + " |")


def _ratio(value):
    return f"{value:.2f}" if value is not None else "skipped"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=12936)
    parser.add_argument("--dim", type=int, default=4096, help="feature size (the teacher's: 2 x 2048)")
    parser.add_argument("--ids", type=int, default=None, help="identities (default n / 17.2, Market's ratio)")
    parser.add_argument("--eps", type=float, default=0.6)
    parser.add_argument("--source", type=int, default=0, help="source images for ABMT's source term (0: none)")
    parser.add_argument("--source-weight", type=float, default=0.1, help="λ of the source term")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--cameras", type=int, default=0,
                        help="also time CA-Jaccard on this many synthetic cameras (0: camera-blind only; the "
                             "generator's default is 6 cameras)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of every process, all sides")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each timed step; the median is reported")
    parser.add_argument("--gpu", choices=("auto", "on", "off"), default="auto",
                        help="also time our step with the search on the GPU: torch on CUDA, faiss-gpu (auto: "
                             "each when it sees a GPU; on: faiss's column even without one, to exercise its "
                             "CPU fallback)")
    parser.add_argument("--previous", type=pathlib.Path,
                        help="an older checkout of this repository: the same step with its slr_refine")
    parser.add_argument("--skip-plain-hdbscan", action="store_true", help="skip the ~200 s plain HDBSCAN calls")
    parser.add_argument("--skip-reference", action="store_true")
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

    if args.previous and not (args.previous / "slr_refine" / "__init__.py").is_file():
        parser.error(f"--previous {args.previous}: no slr_refine package there")
    n_ids = args.ids or max(2, round(args.n / 17.2))
    variants = VARIANTS + tuple(variant + CAMERA_AWARE for variant in VARIANTS if args.cameras)
    n_cameras = args.cameras or 6
    reference_gb, available_gb = reference_peak_gb(args.n, args.dim, args.source), available_memory_gb()
    run_reference = not args.skip_reference and reference_gb < available_gb
    run_refine = not args.skip_refine
    run_plain = run_refine and not args.skip_plain_hdbscan
    threads, repeats = args.threads, args.repeats
    weight = args.source_weight if args.source else 0.0
    print(f"N={args.n} D={args.dim} identities={n_ids} eps={args.eps} alpha={args.alpha} k1={K1} k2={K2} "
          f"min_samples={MIN_SAMPLES} source images={args.source} (λ {weight}) cameras={n_cameras}"
          f"{' (CA-Jaccard: k1 intra 5 / inter 20, k2 3 / 3)' if args.cameras else ''}; "
          f"{threads} thread(s) per process on every side, median of {repeats} run(s)")
    print(f"dense reference: ~{reference_gb:.1f} GB peak estimated, {available_gb:.1f} GB available: "
          f"{'runs' if run_reference else 'skipped'}")
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        devices = run_child("devices", work, threads) if args.gpu != "off" else {"torch_cuda": False, "faiss_gpus": 0}
        backends = list(CPU_BACKENDS)
        if devices["torch_cuda"]:
            backends.append("torch_cuda")
        elif args.gpu == "on":
            print("torch CUDA search: skipped (torch sees no CUDA device)")
        if devices["faiss_gpus"] or args.gpu == "on":
            backends.append("faiss_gpu")
        print(f"search backends: {', '.join(BACKENDS[backend] for backend in backends)}")

        truth = {}
        for tag, epoch in (("prev", 0), ("cur", 1)):
            features, truth[tag], cameras = synthetic_features(args.n, args.dim, n_ids, epoch, n_cameras=n_cameras)
            np.save(work / f"features_{tag}.npy", features)
        np.save(work / "cameras.npy", cameras)  # an image's camera is the same every epoch
        if args.source:  # other identities, drawn like the target's
            np.save(work / "features_source.npy",
                    synthetic_features(args.source, args.dim, n_ids, 1, seed=1, n_cameras=n_cameras)[0])
        del features
        cluster = {"eps": args.eps, "source_weight": weight}
        if run_refine:
            run_child("ours_cluster", work, threads, tag="prev", backend="blas", variant="fastreid", **cluster)
        ours = {backend: {variant: run_median("ours_cluster", work, threads, repeats, tag="cur", backend=backend,
                                              variant=variant, **cluster) for variant in variants}
                for backend in backends}
        previous = None
        if args.previous:
            previous = {variant: run_median("previous_cluster", work, threads, repeats, tag="cur",
                                            path=str(args.previous.resolve()), variant=variant, **cluster)
                        for variant in VARIANTS}
        reference = reference_killed = None
        if run_reference:
            try:
                reference = run_median("reference_cluster", work, threads, repeats, tag="cur", **cluster)
            except ChildKilled as exc:  # the estimate was short: say so, keep our numbers
                reference_killed = str(exc)
        refined = (run_median("ours_refine", work, threads, repeats, alpha=args.alpha, labels="ours_blas_fastreid")
                   if run_refine else None)
        plain = run_child("plain_hdbscan", work, threads, seed=0) if run_plain else None

        labels = {(backend, variant): np.load(work / f"labels_ours_{backend}_{variant}_cur.npy")
                  for backend in backends for variant in variants}
        if previous:
            labels.update({("previous", variant): np.load(work / f"labels_previous_{variant}_cur.npy")
                           for variant in VARIANTS})
        if reference:
            labels["reference"] = np.load(work / "labels_reference_cur.npy")
        if refined:
            labels["fast_hdbscan"] = np.load(work / "labels_fast_hdbscan.npy")
        if plain:
            labels["plain"] = np.load(work / "labels_plain_hdbscan.npy")
            labels["plain_permuted"] = np.load(work / "labels_plain_hdbscan_permuted.npy")

    columns = [(f"ours {BACKENDS[backend]} {variant}", ours[backend][variant]) for backend in backends
               for variant in variants]
    older_api = previous and previous["fastreid"]["api"].endswith("(older)")
    if previous:
        columns += [(f"previous {variant}{' (a)' if older_api else ''}", previous[variant]) for variant in VARIANTS]
    if reference:
        columns.append(("dense reference (b)", reference))
    print_table(columns, with_source=bool(args.source))
    if previous:
        print(f"previous: slr_refine of {previous['fastreid']['engine']}, API {previous['fastreid']['api']}")
    if older_api:
        print("(a) its search row: its kNN (+ farthest) search timed alone, before its Jaccard call, which searches "
              "again: its Jaccard (and source term) include their searches, its total leaves that row out")
    if reference:
        print("(b) fast-reid's variant: its Jaccard includes its faiss kNN; its source term is dense (N×M)")
    for backend in backends[2:]:
        print(f"ours {BACKENDS[backend]}: searched on {ours[backend]['fastreid']['search_device']}")

    def same(a, b):
        return bool(np.array_equal(labels[a], labels[b]))

    def differ(a, b):
        """How two labellings differ, when they do."""
        return (f" ({int((labels[a] != labels[b]).sum())} labels differ, ARI "
                f"{adjusted_rand_score(labels[a], labels[b]):.4f})" if not same(a, b) else "")

    total = {(backend, variant): ours[backend][variant]["total_s"] for backend in backends for variant in variants}
    abmt_over_fastreid = total["blas", "abmt"] / total["blas", "fastreid"]
    print(f"\nabmt / fastreid (ours, blas, total) = {abmt_over_fastreid:.2f} (target: <= 1.2 at Market scale)")
    over_blas = {backend: {variant: total[backend, variant] / total["blas", variant] for variant in variants}
                 for backend in backends[1:]}
    across = {backend: {variant: same((backend, variant), ("blas", variant)) for variant in variants}
              for backend in backends[1:]}
    for backend in backends[1:]:
        print(f"{BACKENDS[backend]} / blas (total): " + ", ".join(
            f"{variant} {over_blas[backend][variant]:.2f}" for variant in variants))
    for backend in backends[1:]:
        print(f"labels, {BACKENDS[backend]} search vs blas identical: " + ", ".join(
            f"{variant} {across[backend][variant]}{differ((backend, variant), ('blas', variant))}"
            for variant in variants))
    identical_across = all(all(by_variant.values()) for by_variant in across.values())
    print(f"labels identical across searches: {identical_across}")
    over_ours = to_previous = identical_previous = None
    if previous:
        over_ours = {variant: previous[variant]["total_s"] / total["blas", variant] for variant in VARIANTS}
        to_previous = {variant: same(("previous", variant), ("blas", variant)) for variant in VARIANTS}
        identical_previous = all(to_previous.values())
        print("previous / ours (blas, total): " + ", ".join(f"{variant} {over_ours[variant]:.2f}"
                                                             for variant in VARIANTS))
        print("labels, ours (blas) vs previous version identical: " + ", ".join(
            f"{variant} {to_previous[variant]}{differ(('blas', variant), ('previous', variant))}"
            for variant in VARIANTS))
    ca_over_blind = {variant: total["blas", variant + CAMERA_AWARE] / total["blas", variant]
                     for variant in VARIANTS if args.cameras}
    if args.cameras:
        print("CA-Jaccard / camera-blind (ours, blas, total): " + ", ".join(
            f"{variant} {ratio:.2f}" for variant, ratio in ca_over_blind.items()))
    print(f"ABMT's Jaccard vs fast-reid's (ours, blas, same k1, k2, eps, source term): ARI "
          f"{adjusted_rand_score(labels['blas', 'fastreid'], labels['blas', 'abmt']):.4f}")

    blas_fastreid = ours["blas"]["fastreid"]
    speedup = identical_reference = None
    if reference:
        speedup = reference["total_s"] / blas_fastreid["total_s"]
        identical_reference = same(("blas", "fastreid"), "reference")
        print(f"\ndense reference / ours (blas, fastreid, total) = {speedup:.2f}")
        print(f"peak RSS, reference (fast-reid + dense sklearn, with torch): {reference['peak_rss_gb']:.2f} GB "
              f"(+{reference['rss_over_inputs_gb']:.2f} GB over interpreter + features); ours (blas, fastreid) "
              f"{blas_fastreid['peak_rss_gb']:.2f} GB (+{blas_fastreid['rss_over_inputs_gb']:.2f} GB), sparse "
              f"nnz/row {blas_fastreid['nnz_per_row']:.0f}")
        print(f"Jaccard max |ours - reference| over all N² pairs: {reference['max_abs_diff']:.2e}")
        print(f"labels, ours (blas, fastreid) vs reference identical: {identical_reference}"
              f"{differ(('blas', 'fastreid'), 'reference')}")
    elif reference_killed:
        print(f"\nreference: {reference_killed}; estimated peak ~{reference_gb:.1f} GB of {available_gb:.1f} GB available")
    elif not args.skip_reference:
        print(f"\nreference: skipped: its dense N×N matrices would peak at ~{reference_gb:.1f} GB (estimated), "
              f"more than the {available_gb:.1f} GB this machine had available")
    else:
        print("\nreference: skipped (--skip-reference)")
    from slr_refine.quality import label_quality

    for variant in variants:
        quality = label_quality(labels["blas", variant], truth["cur"])
        print(f"DBSCAN ({variant}) vs truth: ARI {quality['ari']:.3f} (outliers as singletons), pair precision "
              f"{quality['pair_precision']:.3f} / recall {quality['pair_recall']:.3f}, "
              f"{quality['identities']} identities")

    share = None
    if refined:
        refine_s = refined["seconds_projection"] + refined["seconds_soft_labels"] + refined["seconds_harden"]
        share = refine_s / blas_fastreid["total_s"]
        print(f"\n| SLR step (alpha={args.alpha}, HDBSCAN min size 7) | seconds |")
        print("|---|---|")
        for key in ("projection", "soft_labels", "harden"):
            print(f"| {key} | {refined['seconds_' + key]:.3f} |")
        print(f"| total | {refine_s:.3f} ({share:.1%} of our clustering step, blas, fastreid) |")
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

    peak = max([ours[backend][variant]["peak_rss_gb"] for backend in CPU_BACKENDS for variant in variants]
               + ([refined["peak_rss_gb"]] if refined else []))
    if args.json:
        args.json.write_text(json.dumps({
            "n": args.n, "dim": args.dim, "identities": n_ids, "eps": args.eps, "k1": K1, "k2": K2,
            "min_samples": MIN_SAMPLES, "source": args.source, "source_weight": weight, "threads": threads,
            "repeats": repeats, "devices": devices, "ours": ours, "previous": previous,
            "previous_path": str(args.previous) if args.previous else None, "reference": reference,
            "reference_killed": reference_killed, "reference_peak_gb_estimated": reference_gb,
            "available_gb": available_gb, "refine": refined, "plain_hdbscan": plain,
            "cameras": args.cameras, "abmt_over_fastreid": abmt_over_fastreid, "ca_over_blind": ca_over_blind,
            "over_blas": over_blas, "previous_over_ours": over_ours,
            "speedup_vs_reference": speedup, "labels_identical_to_blas": across,
            "labels_identical_across_searches": identical_across, "labels_identical_to_previous_by_variant": to_previous,
            "labels_identical_to_previous": identical_previous, "labels_identical_to_reference": identical_reference,
            "refine_share": share, "peak_rss_gb": peak}, indent=1))
    print(f"abmt_over_fastreid={abmt_over_fastreid:.2f} faiss_over_blas={over_blas['faiss']['abmt']:.2f} "
          f"previous_over_ours_fastreid={_ratio(over_ours and over_ours['fastreid'])} "
          f"previous_over_ours_abmt={_ratio(over_ours and over_ours['abmt'])} "
          f"labels_identical_across_searches={identical_across} "
          f"labels_identical_to_previous={identical_previous if previous else 'skipped'} "
          f"speedup_vs_reference={_ratio(speedup)} "
          f"labels_identical_to_reference={identical_reference if reference else 'skipped'} "
          f"refine_share={f'{share:.4f}' if refined else 'skipped'} "
          f"ca_over_blind_abmt={_ratio(ca_over_blind.get('abmt'))} peak_rss_gb={peak:.2f}")


if __name__ == "__main__":
    main()
