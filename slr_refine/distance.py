"""k-reciprocal Jaccard distance (Zhong et al.'s re-ranking) as a sparse matrix, in two variants.

``variant="fastreid"``: the semantics of fast-reid's (and SpCL's)
``fastreid.utils.compute_dist.compute_jaccard_distance``: exact L2 kNN (k1 columns, self included),
k-reciprocal sets R(i, k1) over those k1 columns and R(i, k1/2) over the first round(k1/2)+1,
expansion by candidates whose half set overlaps R(i, k1) by more than 2/3, Gaussian-kernel
weights ``softmax(-||x_i - x_j||²)`` over the expanded set, query expansion (mean over the k2
nearest rows) and ``d = 1 - m / (2 - m)`` with ``m = Σ_k min(V[i,k], V[j,k])``.

``variant="abmt"``: ABMT's ``compute_jaccard_dist`` (abmt/utils/rerank.py), which the paper's
baseline clustered with. Two differences, both of which change labels: R(i, k1) is taken over the
first k1+1 ranks (the sample itself and k1 others), and the kernel is ``exp(-||x_i - x_j||² / M_i)``
normalised over the expanded set, ``M_i`` the squared distance from i to the farthest sample of the
whole set (ABMT divides each row of its dense distance matrix by the row's maximum). ``M_i`` comes
from one more exact search (largest distance instead of smallest), so this variant costs about two
kNN searches instead of one.

Why not fast-reid's own code: it fills three dense N×N matrices and loops over rows in Python
(memory grows as N²: 40 GB per float32 matrix at N=100k; the README's performance section has
the measured times). Here every step is sparse and the two per-row loops are numba kernels,
O(N · nnz(row)): time and memory grow linearly in N.

Sparse convention (read this before consuming the result):

- stored entries are exactly the pairs whose encodings overlap (m > 0); an absent pair has
  distance exactly 1;
- a stored distance may be exactly 0 (the diagonal always is; so are identical samples). Those
  entries are explicit zeros and carry meaning: never call ``eliminate_zeros()`` on the result and
  avoid scipy arithmetic (``dist + dist.T``, ``dist * 2``...) that silently drops zeros;
- the matrix is exactly symmetric, with sorted column indices in every row.

``to_dense_distance`` gives the dense equivalent (tests, small N). Adding ABMT's source term
(``source_term.add_source_term``) keeps the stored pattern and makes an absent pair's distance
depend on its two samples; ``AbsentPairs`` says what an absent pair is worth in either case.
"""
import dataclasses
import warnings
from typing import Optional

import numba
import numpy as np
import scipy.sparse as sp

try:
    import faiss
except ImportError as exc:  # the package's own faiss check cannot be imported from here (framework-free)
    raise ImportError(f"slr_refine needs faiss ({exc}): pip install faiss-cpu, or faiss-gpu on a "
                      f"CUDA machine (never both)") from exc


__all__ = ["AbsentPairs", "JACCARD_VARIANTS", "normalize_features", "search", "knn", "jaccard_distance",
           "to_dense_distance"]

# fast-reid's / SpCL's definition, and ABMT's (module docstring).
JACCARD_VARIANTS = ("fastreid", "abmt")


@dataclasses.dataclass(frozen=True)
class AbsentPairs:
    """The distance of a pair a sparse distance matrix does not store: ``base + offset[i] + offset[j]``.

    The k-reciprocal Jaccard distance alone: ``base`` 1, no offset. With ABMT's source term of
    weight λ: ``base`` 1-λ and ``offset`` λ·d_s, so an absent pair is never nearer than ``floor``.
    """

    base: float = 1.0
    offset: Optional[np.ndarray] = None

    @property
    def floor(self) -> float:
        """The smallest distance any absent pair can have."""
        if self.offset is None or self.offset.size < 2:
            return float(self.base)
        smallest = np.partition(self.offset, 1)[:2]
        return float(self.base + smallest[0] + smallest[1])


JACCARD_ABSENT = AbsentPairs()


def normalize_features(features: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation as ``torch.nn.functional.normalize`` does (norm floor 1e-12)."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.maximum(np.linalg.norm(features, axis=1, keepdims=True), np.float32(1e-12))
    return np.ascontiguousarray(features / norms)


def _exact_search(base: np.ndarray, queries: np.ndarray, k: int, chunk_size: int, gpu_device=None,
                  farthest: bool = False):
    """Flat (exact) L2 search of ``queries`` among ``base``, on CUDA device ``gpu_device`` or, when
    None, the CPU: (squared distances, indices), each (len(queries), k). ``farthest``: ``search``'s."""
    index = faiss.IndexFlatIP(base.shape[1]) if farthest else faiss.IndexFlatL2(base.shape[1])
    if gpu_device is not None:
        resources = faiss.StandardGpuResources()  # freed, with its scratch memory, on return
        index = faiss.index_cpu_to_gpu(resources, gpu_device, index)
    index.add(base)
    distances = np.empty((queries.shape[0], k), dtype=np.float32)
    ranks = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], chunk_size):
        stop = min(start + chunk_size, queries.shape[0])
        chunk = queries[start:stop]
        distances[start:stop], ranks[start:stop] = index.search(-chunk if farthest else chunk, k)
    return distances, ranks


def search(base: np.ndarray, queries: np.ndarray, k: int, use_gpu: bool = False, chunk_size: int = 4096,
           gpu_device: int = 0, farthest: bool = False):
    """Each query's k nearest rows of ``base`` (exact L2), nearest first: (squared distances, indices).

    ``farthest``: the k farthest rows instead, farthest first, for unit-norm rows only (where the
    largest distance is the largest inner product with the negated query); the first array then
    holds those inner products, not distances.

    ``use_gpu``: search on CUDA device ``gpu_device`` (the caller's, never a hard-coded 0). When
    faiss has no GPU there, or the GPU search fails (out of memory, say), the same exact search
    runs on the CPU, with a warning. Queried ``chunk_size`` rows at a time so the search scratch
    stays bounded (4096 is faiss's own query block for flat indexes).
    """
    base = np.ascontiguousarray(base, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if not use_gpu:
        return _exact_search(base, queries, k, chunk_size, farthest=farthest)
    gpus = faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0
    if gpu_device >= gpus:
        warnings.warn(f"use_gpu=True but faiss sees {gpus} GPU(s), not device {gpu_device}; searching on the CPU",
                      RuntimeWarning)
        return _exact_search(base, queries, k, chunk_size, farthest=farthest)
    try:
        return _exact_search(base, queries, k, chunk_size, gpu_device, farthest)
    except RuntimeError as exc:  # faiss reports its C++ errors (e.g. cudaMalloc) as RuntimeError
        warnings.warn(f"faiss GPU search on device {gpu_device} failed ({exc}); searching on the CPU", RuntimeWarning)
        return _exact_search(base, queries, k, chunk_size, farthest=farthest)


def knn(features: np.ndarray, k: int, use_gpu: bool = False, chunk_size: int = 4096,
        gpu_device: int = 0) -> np.ndarray:
    """(N, k) indices of each row's k nearest rows (exact L2, itself included), nearest first
    (``search`` of the rows among themselves)."""
    return search(features, features, k, use_gpu, chunk_size, gpu_device)[1]


@numba.njit(cache=True)
def _grow(buffer, used, extra):
    """Return ``buffer`` or a copy at least twice as large, so that ``used + extra`` fits."""
    if used + extra <= buffer.shape[0]:
        return buffer
    grown = np.empty(max(2 * buffer.shape[0], used + extra), dtype=buffer.dtype)
    grown[:used] = buffer[:used]
    return grown


@numba.njit(cache=True)
def _reciprocal_sets(ranks, n_columns):
    """CSR (indptr, indices) of R(i): j among i's first n_columns neighbours and i among j's."""
    n = ranks.shape[0]
    indptr = np.zeros(n + 1, dtype=np.int64)
    indices = np.empty(n * n_columns, dtype=np.int64)
    used = 0
    for i in range(n):
        start = used
        for a in range(n_columns):
            j = ranks[i, a]
            if j < 0:  # faiss pads with -1 when fewer than k rows exist
                continue
            for b in range(n_columns):
                if ranks[j, b] == i:
                    indices[used] = j
                    used += 1
                    break
        indices[start:used].sort()
        indptr[i + 1] = used
    return indptr, indices[:used]


@numba.njit(cache=True)
def _expanded_sets(full_ptr, full_idx, half_ptr, half_idx):
    """CSR of R*(i): R(i, k1) plus every R(c, k1/2), c in R(i, k1), overlapping it by > 2/3."""
    n = full_ptr.shape[0] - 1
    in_full = np.zeros(n, dtype=np.bool_)
    in_expanded = np.zeros(n, dtype=np.bool_)
    indptr = np.zeros(n + 1, dtype=np.int64)
    indices = np.empty(full_idx.shape[0] * 2 + 16, dtype=np.int64)
    used = 0
    for i in range(n):
        start = used
        for t in range(full_ptr[i], full_ptr[i + 1]):
            in_full[full_idx[t]] = True
        for t in range(full_ptr[i], full_ptr[i + 1]):
            j = full_idx[t]
            indices = _grow(indices, used, 1)
            indices[used] = j
            used += 1
            in_expanded[j] = True
        for t in range(full_ptr[i], full_ptr[i + 1]):
            c = full_idx[t]
            size = half_ptr[c + 1] - half_ptr[c]
            overlap = 0
            for s in range(half_ptr[c], half_ptr[c + 1]):
                if in_full[half_idx[s]]:
                    overlap += 1
            if overlap > 2.0 / 3.0 * size:
                indices = _grow(indices, used, size)
                for s in range(half_ptr[c], half_ptr[c + 1]):
                    j = half_idx[s]
                    if not in_expanded[j]:
                        in_expanded[j] = True
                        indices[used] = j
                        used += 1
        for t in range(start, used):
            in_expanded[indices[t]] = False
        for t in range(full_ptr[i], full_ptr[i + 1]):
            in_full[full_idx[t]] = False
        indices[start:used].sort()
        indptr[i + 1] = used
    return indptr, indices[:used]


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _squared_distance(x, y):
    total = 0.0
    for d in range(x.shape[0]):
        diff = np.float64(x[d]) - np.float64(y[d])
        total += diff * diff
    return total


@numba.njit(cache=True)
def _distances_to(features, partners):
    """||x_i - x_partners[i]||² of every row, in float64."""
    distances = np.empty(features.shape[0], dtype=np.float64)
    for i in range(features.shape[0]):
        distances[i] = _squared_distance(features[i], features[partners[i]])
    return distances


def farthest_squared_distances(features: np.ndarray, use_gpu: bool = False, chunk_size: int = 4096,
                               gpu_device: int = 0) -> np.ndarray:
    """max_j ||x_i - x_j||² of every row of unit-norm ``features`` (ABMT's per-row scale M_i), float64.

    The farthest row comes from an exact search (``search(farthest=True)``); its distance is then
    recomputed in float64, as every kernel distance here is.
    """
    farthest = search(features, features, 1, use_gpu, chunk_size, gpu_device, farthest=True)[1][:, 0]
    return _distances_to(features, farthest)


@numba.njit(cache=True)
def _gaussian_weights(features, indptr, indices, row_scale):
    """V's values: softmax of -||x_i - x_j||² · row_scale[i] over each row's expanded set."""
    weights = np.empty(indices.shape[0], dtype=np.float32)
    for i in range(indptr.shape[0] - 1):
        start, stop = indptr[i], indptr[i + 1]
        if start == stop:
            continue
        distances = np.empty(stop - start, dtype=np.float64)
        for t in range(start, stop):
            distances[t - start] = _squared_distance(features[i], features[indices[t]]) * row_scale[i]
        shifted = np.exp(-(distances - distances.min()))
        weights[start:stop] = (shifted / shifted.sum()).astype(np.float32)
    return weights


@numba.njit(cache=True)
def _jaccard_upper(v_ptr, v_idx, v_val, c_ptr, c_idx, c_val):
    """Upper triangle (j > i) of d(i, j) = 1 - m / (2 - m), m = Σ_k min(V[i,k], V[j,k]) > 0.

    Row i scatters over the columns k of V[i] and, for each, the rows j holding k (CSC of V), so the
    cost is O(Σ_k nnz(column k)) per row, never O(N). m is summed in float32 over k ascending, the
    order fast-reid uses, so equal encodings give bit-equal distances.
    """
    n = v_ptr.shape[0] - 1
    overlap = np.zeros(n, dtype=np.float32)
    touched = np.zeros(n, dtype=np.bool_)
    partners = np.empty(n, dtype=np.int64)
    indptr = np.zeros(n + 1, dtype=np.int64)
    indices = np.empty(16 * n + 16, dtype=np.int32)
    values = np.empty(16 * n + 16, dtype=np.float32)
    one, two, zero = np.float32(1.0), np.float32(2.0), np.float32(0.0)
    used = 0
    for i in range(n):
        n_partners = 0
        for a in range(v_ptr[i], v_ptr[i + 1]):
            k = v_idx[a]
            v_ik = v_val[a]
            first = c_ptr[k] + np.searchsorted(c_idx[c_ptr[k]:c_ptr[k + 1]], i + 1)
            for b in range(first, c_ptr[k + 1]):
                j = c_idx[b]
                if not touched[j]:
                    touched[j] = True
                    partners[n_partners] = j
                    n_partners += 1
                overlap[j] += min(v_ik, c_val[b])
        found = np.sort(partners[:n_partners])
        indices = _grow(indices, used, n_partners)
        values = _grow(values, used, n_partners)
        for t in range(n_partners):
            j = found[t]
            m = overlap[j]
            distance = one - m / (two - m)
            indices[used] = j
            values[used] = distance if distance > zero else zero
            used += 1
            overlap[j] = zero
            touched[j] = False
        indptr[i + 1] = used
    return indptr, indices[:used], values[:used]


@numba.njit(cache=True)
def _symmetric_with_zero_diagonal(n, upper_ptr, upper_idx, upper_val):
    """CSR of lower + diagonal (explicit 0) + upper, filled in one pass without temporaries.

    Row i is [entries (i, j<i) mirrored from row j] [0 at (i, i)] [row i of the upper triangle];
    mirrored entries arrive in ascending j, so every row comes out sorted.
    """
    lower_counts = np.zeros(n, dtype=np.int64)
    for t in range(upper_idx.shape[0]):
        lower_counts[upper_idx[t]] += 1
    indptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        indptr[i + 1] = indptr[i] + lower_counts[i] + 1 + (upper_ptr[i + 1] - upper_ptr[i])
    indices = np.empty(indptr[n], dtype=np.int32)
    values = np.empty(indptr[n], dtype=np.float32)
    lower_cursor = indptr[:n].copy()
    for i in range(n):
        diagonal = indptr[i] + lower_counts[i]
        indices[diagonal] = i
        values[diagonal] = 0.0
        out = diagonal + 1
        for t in range(upper_ptr[i], upper_ptr[i + 1]):
            j = upper_idx[t]
            indices[out] = j
            values[out] = upper_val[t]
            out += 1
            indices[lower_cursor[j]] = i
            values[lower_cursor[j]] = upper_val[t]
            lower_cursor[j] += 1
    return indptr, indices, values


def jaccard_distance(
    features: np.ndarray,
    k1: int = 30,
    k2: int = 6,
    normalize: bool = True,
    use_gpu: bool = False,
    chunk_size: int = 4096,
    gpu_device: int = 0,
    variant: str = "fastreid",
) -> sp.csr_matrix:
    """Sparse k-reciprocal Jaccard distance of the rows of ``features`` (N, D).

    Args:
        features: teacher features, one row per sample.
        k1: neighbourhood size of the k-reciprocal sets (fast-reid/SpCL 30, ABMT 20).
        k2: query-expansion size (1 disables it, as in fast-reid).
        normalize: L2-normalise rows first (what fast-reid's callers do with cosine features; ABMT's
            model outputs unit-norm features, and its variant needs them).
        use_gpu: search the kNN on a faiss GPU index when one exists (``knn``).
        chunk_size: kNN query rows per faiss call.
        gpu_device: the CUDA device of that index.
        variant: "fastreid" or "abmt" (``JACCARD_VARIANTS``, module docstring).

    Returns:
        float32 CSR (N, N); absent pairs mean distance 1, stored zeros are real (module docstring).
    """
    if variant not in JACCARD_VARIANTS:
        raise ValueError(f"Jaccard variant must be one of {JACCARD_VARIANTS}, got {variant!r}")
    if variant == "abmt" and not normalize:
        raise ValueError("the abmt variant scales by the farthest sample, found on unit-norm rows: normalize=True")
    features = normalize_features(features) if normalize else np.ascontiguousarray(features, dtype=np.float32)
    n = features.shape[0]
    if variant == "abmt":
        # ABMT ranks the whole row and slices k1+1 columns for R(i, k1) and round(k1/2)+1 for the half set
        full_columns = min(k1 + 1, n)
        half_columns = min(int(np.around(k1 / 2)) + 1, n)
        with np.errstate(divide="ignore"):
            farthest = farthest_squared_distances(features, use_gpu, chunk_size, gpu_device)
            row_scale = np.where(farthest > 0, 1.0 / farthest, 1.0)  # all rows equal: every distance is 0
    else:
        # fast-reid searches k1 neighbours and slices k1+1 columns: R(i, k1) sees k1 columns (self
        # included), R(i, k1/2) round(k1/2)+1 of them; it indexes faiss's -1 padding as row -1 when N < k1
        full_columns = min(k1, n)
        half_columns = min(int(np.around(full_columns / 2)) + 1, full_columns)
        row_scale = np.ones(n)
    ranks = knn(features, full_columns, use_gpu=use_gpu, chunk_size=chunk_size, gpu_device=gpu_device)

    full_ptr, full_idx = _reciprocal_sets(ranks, full_columns)
    half_ptr, half_idx = _reciprocal_sets(ranks, half_columns)
    exp_ptr, exp_idx = _expanded_sets(full_ptr, full_idx, half_ptr, half_idx)
    encoding = sp.csr_matrix((_gaussian_weights(features, exp_ptr, exp_idx, row_scale), exp_idx, exp_ptr),
                             shape=(n, n))

    k2 = min(k2, full_columns)
    if k2 != 1:
        rows = np.repeat(np.arange(n), k2)
        averaging = sp.csr_matrix(
            (np.full(n * k2, 1.0 / k2, dtype=np.float32), (rows, ranks[:, :k2].ravel())), shape=(n, n)
        )
        encoding = averaging @ encoding
        encoding.eliminate_zeros()  # only nonzero encodings define overlaps
    encoding.sort_indices()
    by_column = encoding.tocsc()
    by_column.sort_indices()

    upper_ptr, upper_idx, upper_val = _jaccard_upper(
        encoding.indptr.astype(np.int64), encoding.indices.astype(np.int64), encoding.data,
        by_column.indptr.astype(np.int64), by_column.indices.astype(np.int64), by_column.data,
    )
    indptr, indices, values = _symmetric_with_zero_diagonal(n, upper_ptr, upper_idx, upper_val)
    return sp.csr_matrix((values, indices, indptr), shape=(n, n))


def to_dense_distance(dist: sp.csr_matrix, absent: AbsentPairs = JACCARD_ABSENT) -> np.ndarray:
    """Dense equivalent of a sparse distance in this module's convention (tests, small N)."""
    coo = dist.tocoo()
    dense = np.full(dist.shape, absent.base, dtype=dist.dtype)
    if absent.offset is not None:
        offset = absent.offset.astype(dist.dtype)
        dense += offset[:, None] + offset[None, :]
    dense[coo.row, coo.col] = coo.data
    return dense
