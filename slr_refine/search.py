"""Exact neighbour search: every neighbour the clustering needs, from one pass of products.

Of each target image i the clustering needs its k nearest target images (the k-reciprocal sets),
its farthest target image (ABMT's row scale) and its nearest source image (ABMT's source term).
All three are reductions of the same blocks of inner products, so ``search_neighbours`` takes
them in one pass over the data: a block of products gives its rows' nearest and farthest
candidates at once, and a target block against a source block their nearest source candidates.

The products are float32 (BLAS on the CPU, cuBLAS through torch, or faiss: a ``backend``); their
rounding must not decide a rank. A backend returns a few more candidates per row than asked,
with the float32 distance at the edge of its candidate set; the candidates are then ordered by
their float64 distances (the ones the Jaccard kernel uses), ties by index, and the order is
certified: a float32 distance is within ``float32_error`` of the true one, so no row outside the
candidates can come before the k-th when the edge lies further than that beyond it. A row that
cannot be certified is searched again in float64 over every row. The result is therefore the same
on every backend, block size and thread count: that of a dense float64 search.

The numba kernels are serial on purpose: numba's parallel (OpenMP) threads kept spinning beside
torch's after the search and made the training steps that followed about twice as slow (measured
in the demo); the products, the bulk of the work, run on the backend's threads.
"""
import dataclasses
import warnings
from typing import Optional, Protocol

import numba
import numpy as np

try:
    import faiss
except ImportError as exc:  # the package's own faiss check cannot be imported from here (framework-free)
    raise ImportError(f"slr_refine needs faiss ({exc}): pip install faiss-cpu, or faiss-gpu on a "
                      f"CUDA machine (never both)") from exc

__all__ = ["BlasSearch", "Candidates", "FaissSearch", "NeighbourSearch", "Neighbours", "float32_error",
           "normalize_features", "search_neighbours", "squared_distance"]

# Candidates a backend keeps beyond the k asked for (nearest), and for the farthest and the nearest
# source image: more costs float64 distances, fewer leaves more rows uncertified.
NEAR_MARGIN = 8
EXTREME_CANDIDATES = 4


@dataclasses.dataclass(frozen=True)
class Neighbours:
    """What ``search_neighbours`` found, in float64 where it is a distance.

    ``ranks`` (N, k): each row's k nearest rows (itself included), nearest first, ties by index.
    ``farthest`` (N,): squared distance to the farthest row (None unless asked).
    ``nearest_other`` (N,): squared distance to the nearest row of ``others`` (None without them).
    ``uncertified`` how many rows were searched again in float64 (telemetry).
    """

    ranks: np.ndarray
    farthest: Optional[np.ndarray] = None
    nearest_other: Optional[np.ndarray] = None
    uncertified: int = 0


@dataclasses.dataclass(frozen=True)
class Candidates:
    """A backend's float32 preselection. ``near`` (N, c) holds the c rows of smallest float32
    distance (any order) and ``near_edge`` (N,) the largest of their distances: every row outside
    has a float32 distance >= it. ``far`` / ``far_edge`` the same for the largest distances (every
    row outside <= the edge), ``other`` / ``other_edge`` for the smallest distances to ``others``."""

    near: np.ndarray
    near_edge: np.ndarray
    far: Optional[np.ndarray] = None
    far_edge: Optional[np.ndarray] = None
    other: Optional[np.ndarray] = None
    other_edge: Optional[np.ndarray] = None


class NeighbourSearch(Protocol):
    """A backend: float32 squared distances ``fl(|q|²) + fl(|x|²) - 2·fl(q·x)``, products summed in
    float32 in any order (what ``float32_error`` bounds), reduced to ``Candidates``."""

    name: str

    def candidates(self, features: np.ndarray, n_near: int, n_far: int, others: Optional[np.ndarray],
                   n_other: int) -> Candidates:
        """``n_near`` nearest and ``n_far`` farthest rows of ``features`` for each of its rows, and its
        ``n_other`` nearest rows of ``others``."""


def float32_error(query_norms: np.ndarray, base_norms: np.ndarray, dim: int) -> np.ndarray:
    """Per query row, a bound on |float32 distance - exact distance| to any base row.

    A float32 dot product of length D, summed in any order, is within γ_D·|q|·|x| of the exact one
    (γ_n = n·u / (1 - n·u), u = 2^-24); the squared norms likewise within γ_D·|.|², and the two
    additions add 2u of the total. Hence γ_{D+2}·(|q| + max|x|)².
    """
    unit = 2.0 ** -24
    gamma = (dim + 2) * unit / (1 - (dim + 2) * unit)
    largest = float(base_norms.max(initial=0.0))
    return gamma * (query_norms + largest) ** 2


def normalize_features(features: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation as ``torch.nn.functional.normalize`` does (norm floor 1e-12)."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.maximum(np.linalg.norm(features, axis=1, keepdims=True), np.float32(1e-12))
    return np.ascontiguousarray(features / norms)


def _norms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))


def search_neighbours(features: np.ndarray, k: int, farthest: bool = False, others: Optional[np.ndarray] = None,
                      backend: Optional[NeighbourSearch] = None) -> Neighbours:
    """Each row's ``k`` nearest rows of ``features`` (exact L2), with ``farthest`` its farthest row's
    squared distance and with ``others`` its nearest other row's (module docstring).

    ``backend``: where the float32 products run (``BlasSearch`` by default).
    """
    features = np.ascontiguousarray(features, dtype=np.float32)
    n, dim = features.shape
    k = min(k, n)
    if others is not None:
        others = np.ascontiguousarray(others, dtype=np.float32)
        if others.shape[1] != dim or len(others) == 0:
            raise ValueError(f"others must be a non-empty (M, {dim}) array, got {others.shape}")
    backend = backend or BlasSearch()
    n_near = min(n, k + NEAR_MARGIN) if k else 0
    n_far = min(n, EXTREME_CANDIDATES) if farthest else 0
    n_other = min(len(others), EXTREME_CANDIDATES) if others is not None else 0
    found = backend.candidates(features, n_near, n_far, others, n_other)

    norms = _norms(features)
    error = float32_error(norms, norms, dim)
    ranks = np.empty((n, k), dtype=np.int64)
    uncertified = np.zeros(n, dtype=np.bool_)
    if k:
        certain = _rank_candidates(features, found.near, found.near_edge.astype(np.float64), error, k, ranks)
        uncertified |= ~certain
    far_distance = None
    if farthest:
        far_distance = np.empty(n)
        certain = _extreme_of_candidates(features, features, found.far, found.far_edge.astype(np.float64), error,
                                         True, far_distance)
        uncertified |= ~certain
    nearest_other = None
    if others is not None:
        nearest_other = np.empty(n)
        other_error = float32_error(norms, _norms(others), dim)
        certain = _extreme_of_candidates(features, others, found.other, found.other_edge.astype(np.float64),
                                         other_error, False, nearest_other)
        uncertified |= ~certain
    redo = np.flatnonzero(uncertified)
    if redo.size:
        _exact_rows(features, redo, k, ranks, far_distance if farthest else np.empty(0),
                    others if others is not None else np.empty((0, dim), np.float32),
                    nearest_other if others is not None else np.empty(0))
    return Neighbours(ranks=ranks, farthest=far_distance, nearest_other=nearest_other, uncertified=int(redo.size))


# ----------------------------------------------------------------------------------- float64 side
@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def squared_distance(x, y):
    """||x - y||² in float64 (the distance every rank and kernel weight here is taken on)."""
    total = 0.0
    for d in range(x.shape[0]):
        diff = np.float64(x[d]) - np.float64(y[d])
        total += diff * diff
    return total


@numba.njit(cache=True)
def _rank_candidates(features, candidates, edge, error, k, ranks):
    """``ranks[i]``: row i's candidates in (float64 distance, index) order, first k; returns which
    rows are certified (no row outside the candidates can precede the k-th)."""
    n, count = candidates.shape
    certain = np.empty(n, dtype=np.bool_)
    for i in range(n):
        members = np.sort(candidates[i])
        distances = np.empty(count)
        for t in range(count):
            distances[t] = squared_distance(features[i], features[members[t]])
        order = np.argsort(distances, kind="mergesort")  # stable: ties stay in index order
        for t in range(k):
            ranks[i, t] = members[order[t]]
        certain[i] = count == n or edge[i] - error[i] > distances[order[k - 1]]
    return certain


@numba.njit(cache=True)
def _extreme_of_candidates(features, base, candidates, edge, error, largest, out):
    """``out[i]``: the largest (or smallest) float64 distance from row i to its candidates of
    ``base``; returns which rows are certified."""
    n, count = candidates.shape
    certain = np.empty(n, dtype=np.bool_)
    for i in range(n):
        best = -1.0 if largest else np.inf
        for t in range(count):
            d = squared_distance(features[i], base[candidates[i, t]])
            best = max(best, d) if largest else min(best, d)
        out[i] = best
        if count == base.shape[0]:
            certain[i] = True
        elif largest:
            certain[i] = edge[i] + error[i] < best
        else:
            certain[i] = edge[i] - error[i] > best
    return certain


@numba.njit(cache=True)
def _exact_rows(features, rows, k, ranks, farthest, others, nearest_other):
    """The uncertified ``rows`` searched in float64 over every row (and every row of ``others``)."""
    n = features.shape[0]
    for r in range(rows.shape[0]):
        i = rows[r]
        distances = np.empty(n)
        for j in range(n):
            distances[j] = squared_distance(features[i], features[j])
        if k:
            order = np.argsort(distances, kind="mergesort")
            ranks[i, :] = order[:k]
        if farthest.shape[0]:
            farthest[i] = distances.max()
        if nearest_other.shape[0]:
            best = np.inf
            for j in range(others.shape[0]):
                best = min(best, squared_distance(features[i], others[j]))
            nearest_other[i] = best


# ----------------------------------------------------------------------------------- the CPU backend
@numba.njit(cache=True)
def _scan_block(products, row_norms, column_norms, column_offset, near, near_edge, far, far_edge):
    """Fold one block of products into its rows' running candidates.

    ``near[a]`` / ``near_edge[a]`` (rows of this block) hold each row's smallest float32 distances
    so far, ascending; ``far`` / ``far_edge`` its largest, descending (zero columns: not wanted).
    A distance enters by insertion, so every row ever left out is beyond the final edge.
    """
    n_near, n_far = near.shape[1], far.shape[1]
    for a in range(products.shape[0]):
        for b in range(products.shape[1]):
            d = row_norms[a] + column_norms[b] - np.float32(2.0) * products[a, b]
            if n_near and d < near_edge[a, n_near - 1]:
                t = n_near - 1
                while t > 0 and near_edge[a, t - 1] > d:
                    near_edge[a, t] = near_edge[a, t - 1]
                    near[a, t] = near[a, t - 1]
                    t -= 1
                near_edge[a, t] = d
                near[a, t] = column_offset + b
            if n_far and d > far_edge[a, n_far - 1]:
                t = n_far - 1
                while t > 0 and far_edge[a, t - 1] < d:
                    far_edge[a, t] = far_edge[a, t - 1]
                    far[a, t] = far[a, t - 1]
                    t -= 1
                far_edge[a, t] = d
                far[a, t] = column_offset + b


class BlasSearch:
    """float32 products through numpy's BLAS, ``block_size`` rows by ``block_size`` rows.

    The features against themselves form a symmetric matrix: each pair of blocks is multiplied once
    and folded into both blocks' rows (half the products of a plain search); the source rows are
    folded into the same pass, block by block. Memory: one block of products.
    """

    name = "blas"

    def __init__(self, block_size: int = 2048):
        self.block_size = block_size

    def candidates(self, features, n_near, n_far, others, n_other):
        n, size = len(features), self.block_size
        norms = np.einsum("ij,ij->i", features, features, dtype=np.float64).astype(np.float32)
        near, near_d = np.zeros((n, n_near), np.int64), np.full((n, n_near), np.inf, np.float32)
        far, far_d = np.zeros((n, n_far), np.int64), np.full((n, n_far), -np.inf, np.float32)
        other, other_d = np.zeros((n, n_other), np.int64), np.full((n, n_other), np.inf, np.float32)
        none, none_d = np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
        other_norms = None
        if n_other:
            other_norms = np.einsum("ij,ij->i", others, others, dtype=np.float64).astype(np.float32)
        for start in range(0, n, size):
            rows = slice(start, min(start + size, n))
            if n_near or n_far:
                for column_start in range(start, n, size):
                    columns = slice(column_start, min(column_start + size, n))
                    products = features[rows] @ features[columns].T
                    _scan_block(products, norms[rows], norms[columns], column_start,
                                near[rows], near_d[rows], far[rows], far_d[rows])
                    if column_start != start:  # the same products seen from the other block's rows
                        _scan_block(np.ascontiguousarray(products.T), norms[columns], norms[rows], start,
                                    near[columns], near_d[columns], far[columns], far_d[columns])
            for other_start in range(0, len(others) if n_other else 0, size):
                columns = slice(other_start, min(other_start + size, len(others)))
                _scan_block(features[rows] @ others[columns].T, norms[rows], other_norms[columns], other_start,
                            other[rows], other_d[rows], none[rows], none_d[rows])
        return Candidates(near=near, near_edge=near_d[:, -1] if n_near else np.zeros(n, np.float32),
                          far=far if n_far else None, far_edge=far_d[:, -1] if n_far else None,
                          other=other if n_other else None, other_edge=other_d[:, -1] if n_other else None)


# ----------------------------------------------------------------------------------- faiss
class FaissSearch:
    """faiss flat indexes, on the CPU or, with faiss-gpu, on CUDA device ``gpu_device``.

    A faiss search yields one reduction, so the nearest, the farthest (an inner-product index
    queried with -q) and the nearest source rows are three searches. When faiss has no GPU there,
    or the GPU search fails (out of memory, say), the same searches run on the CPU, with a warning.
    """

    name = "faiss"

    def __init__(self, gpu_device: Optional[int] = None, chunk_size: int = 4096):
        self.gpu_device, self.chunk_size = gpu_device, chunk_size

    def candidates(self, features, n_near, n_far, others, n_other):
        if self.gpu_device is None:
            return self._candidates(features, n_near, n_far, others, n_other, None)
        gpus = faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0
        if self.gpu_device >= gpus:
            warnings.warn(f"faiss sees {gpus} GPU(s), not device {self.gpu_device}; searching on the CPU",
                          RuntimeWarning)
            return self._candidates(features, n_near, n_far, others, n_other, None)
        try:
            return self._candidates(features, n_near, n_far, others, n_other, self.gpu_device)
        except RuntimeError as exc:  # faiss reports its C++ errors (e.g. cudaMalloc) as RuntimeError
            warnings.warn(f"faiss GPU search on device {self.gpu_device} failed ({exc}); searching on the CPU",
                          RuntimeWarning)
            return self._candidates(features, n_near, n_far, others, n_other, None)

    def _candidates(self, features, n_near, n_far, others, n_other, device):
        n = len(features)
        found = {"near_edge": np.zeros(n, np.float32)}
        if n_near:
            distances, found["near"] = self._search(faiss.IndexFlatL2, features, features, n_near, device)
            found["near_edge"] = distances[:, -1]
        else:
            found["near"] = np.zeros((n, 0), np.int64)
        if n_far:
            # the largest -q·x is the largest distance up to the norms: bound it with the largest norm
            products, found["far"] = self._search(faiss.IndexFlatIP, features, -features, n_far, device)
            norms = np.einsum("ij,ij->i", features, features, dtype=np.float64)
            found["far_edge"] = norms + norms.max() + 2 * products[:, -1].astype(np.float64)
        if n_other:
            distances, found["other"] = self._search(faiss.IndexFlatL2, others, features, n_other, device)
            found["other_edge"] = distances[:, -1]
        return Candidates(**found)

    def _search(self, index_type, base, queries, k, device):
        index = index_type(base.shape[1])
        if device is not None:
            resources = faiss.StandardGpuResources()  # freed, with its scratch memory, on return
            index = faiss.index_cpu_to_gpu(resources, device, index)
        index.add(base)
        values = np.empty((len(queries), k), dtype=np.float32)
        ranks = np.empty((len(queries), k), dtype=np.int64)
        for start in range(0, len(queries), self.chunk_size):
            stop = min(start + self.chunk_size, len(queries))
            values[start:stop], ranks[start:stop] = index.search(np.ascontiguousarray(queries[start:stop]), k)
        return values, ranks
