"""Exact neighbour search: every neighbour the clustering needs, from one pass of products.

Of each target image i the clustering needs its k nearest target images (the k-reciprocal sets),
its farthest target image (ABMT's row scale) and its nearest source image (ABMT's source term);
CA-Jaccard (``ca_jaccard.py``) its nearest images within its own camera and across the others.
All are reductions of the same blocks of inner products, so ``search_neighbours`` takes
them in one pass over the data: a block of products gives its rows' nearest and farthest
candidates, and with camera ids their nearest of the same and of another camera, at once; a
target block against a source block gives their nearest source candidates.

The products are float32 (BLAS on the CPU, cuBLAS through torch, or faiss: a ``backend``,
``search_backends.py``); their
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
from typing import Optional, Protocol

import numba
import numpy as np

__all__ = ["Candidates", "NeighbourSearch", "Neighbours", "float32_error", "normalize_features", "search_neighbours",
           "squared_distance"]

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
    ``within`` / ``across`` (N, w) / (N, a): each row's nearest rows of its own camera (itself
    included) / of the other cameras, in the same order; -1 pads a row with fewer such rows
    (None without camera ids).
    ``uncertified`` how many rows were searched again in float64 (telemetry).
    """

    ranks: np.ndarray
    farthest: Optional[np.ndarray] = None
    nearest_other: Optional[np.ndarray] = None
    within: Optional[np.ndarray] = None
    across: Optional[np.ndarray] = None
    uncertified: int = 0


@dataclasses.dataclass(frozen=True)
class Candidates:
    """A backend's float32 preselection. ``near`` (N, c) holds the c rows of smallest float32
    distance (any order) and ``near_edge`` (N,) the largest of their distances: every row outside
    has a float32 distance >= it. ``far`` / ``far_edge`` the same for the largest distances (every
    row outside <= the edge), ``other`` / ``other_edge`` for the smallest distances to ``others``,
    ``within`` / ``within_edge`` and ``across`` / ``across_edge`` for the smallest distances to rows
    of the same camera / of another camera (-1 pads a row with fewer such rows)."""

    near: np.ndarray
    near_edge: np.ndarray
    far: Optional[np.ndarray] = None
    far_edge: Optional[np.ndarray] = None
    other: Optional[np.ndarray] = None
    other_edge: Optional[np.ndarray] = None
    within: Optional[np.ndarray] = None
    within_edge: Optional[np.ndarray] = None
    across: Optional[np.ndarray] = None
    across_edge: Optional[np.ndarray] = None


class NeighbourSearch(Protocol):
    """A backend: float32 squared distances ``fl(|q|²) + fl(|x|²) - 2·fl(q·x)``, products summed in
    float32 in any order (what ``float32_error`` bounds), reduced to ``Candidates``."""

    name: str

    def candidates(self, features: np.ndarray, n_near: int, n_far: int, others: Optional[np.ndarray],
                   n_other: int, cameras: Optional[np.ndarray] = None, n_within: int = 0,
                   n_across: int = 0) -> Candidates:
        """``n_near`` nearest and ``n_far`` farthest rows of ``features`` for each of its rows, its
        ``n_other`` nearest rows of ``others``, and with ``cameras`` (N,) its ``n_within`` nearest
        rows of its own camera and ``n_across`` of the others."""


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
                      backend: Optional[NeighbourSearch] = None, cameras: Optional[np.ndarray] = None,
                      within: int = 0, across: int = 0) -> Neighbours:
    """Each row's ``k`` nearest rows of ``features`` (exact L2), with ``farthest`` its farthest row's
    squared distance, with ``others`` its nearest other row's, and with ``cameras`` (N,) camera
    ids its ``within`` nearest rows of its own camera and ``across`` of the others (module docstring).

    ``backend``: where the float32 products run (``search_backends.BlasSearch`` by default).
    """
    features = np.ascontiguousarray(features, dtype=np.float32)
    n, dim = features.shape
    k = min(k, n)
    if others is not None:
        others = np.ascontiguousarray(others, dtype=np.float32)
        if others.shape[1] != dim or len(others) == 0:
            raise ValueError(f"others must be a non-empty (M, {dim}) array, got {others.shape}")
    by_camera = bool(within or across)
    if by_camera and (cameras is None or np.shape(cameras) != (n,)):
        raise ValueError(f"neighbours by camera need one camera id per row: got {np.shape(cameras)} for {n} rows")
    cameras = np.unique(cameras, return_inverse=True)[1].astype(np.int64) if by_camera else None  # ids 0..C-1
    camera_sizes = np.bincount(cameras)[cameras] if by_camera else np.zeros(n, dtype=np.int64)
    if backend is None:
        from .search_backends import BlasSearch  # the backends build on this module

        backend = BlasSearch()
    n_near = min(n, k + NEAR_MARGIN) if k else 0
    n_far = min(n, EXTREME_CANDIDATES) if farthest else 0
    n_other = min(len(others), EXTREME_CANDIDATES) if others is not None else 0
    n_within = min(n, within + NEAR_MARGIN) if within else 0
    n_across = min(n, across + NEAR_MARGIN) if across else 0
    found = backend.candidates(features, n_near, n_far, others, n_other, cameras, n_within, n_across)

    norms = _norms(features)
    error = float32_error(norms, norms, dim)
    uncertified = np.zeros(n, dtype=np.bool_)
    lists = {}
    for name, count, candidates, edge, eligible in (
            ("ranks", k, found.near, found.near_edge, np.full(n, n)),
            ("within", within, found.within, found.within_edge, camera_sizes),
            ("across", across, found.across, found.across_edge, n - camera_sizes)):
        lists[name] = np.full((n, count), -1, dtype=np.int64)
        if count:
            uncertified |= ~_rank_candidates(features, candidates, edge.astype(np.float64), error, eligible,
                                             lists[name])
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
        _exact_rows(features, redo, lists["ranks"], far_distance if farthest else np.empty(0),
                    others if others is not None else np.empty((0, dim), np.float32),
                    nearest_other if others is not None else np.empty(0),
                    cameras if by_camera else np.zeros(n, np.int64), lists["within"], lists["across"])
    return Neighbours(ranks=lists["ranks"], farthest=far_distance, nearest_other=nearest_other,
                      within=lists["within"] if by_camera else None, across=lists["across"] if by_camera else None,
                      uncertified=int(redo.size))


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
def _rank_candidates(features, candidates, edge, error, eligible, ranks):
    """``ranks[i]``: row i's candidates (-1: none) in (float64 distance, index) order, first k, -1
    after its last; returns which rows are certified: every one of the ``eligible[i]`` rows it may
    rank is a candidate, or none outside can precede the k-th."""
    k = ranks.shape[1]
    certain = np.empty(candidates.shape[0], dtype=np.bool_)
    for i in range(candidates.shape[0]):
        members = np.sort(candidates[i][candidates[i] >= 0])
        count = members.shape[0]
        distances = np.empty(count)
        for t in range(count):
            distances[t] = squared_distance(features[i], features[members[t]])
        order = np.argsort(distances, kind="mergesort")  # stable: ties stay in index order
        for t in range(min(k, count)):
            ranks[i, t] = members[order[t]]
        certain[i] = count == eligible[i] or (count >= k and edge[i] - error[i] > distances[order[k - 1]])
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
def _exact_rows(features, rows, ranks, farthest, others, nearest_other, cameras, within, across):
    """The uncertified ``rows`` searched in float64 over every row (and every row of ``others``)."""
    n = features.shape[0]
    for r in range(rows.shape[0]):
        i = rows[r]
        distances = np.empty(n)
        for j in range(n):
            distances[j] = squared_distance(features[i], features[j])
        order = np.argsort(distances, kind="mergesort")
        ranks[i, :] = order[:ranks.shape[1]]
        kept_within = kept_across = 0
        for j in order:  # the nearest of each camera list, in the same order (-1 stays after the last)
            if cameras[j] == cameras[i] and kept_within < within.shape[1]:
                within[i, kept_within] = j
                kept_within += 1
            elif cameras[j] != cameras[i] and kept_across < across.shape[1]:
                across[i, kept_across] = j
                kept_across += 1
        if farthest.shape[0]:
            farthest[i] = distances.max()
        if nearest_other.shape[0]:
            best = np.inf
            for j in range(others.shape[0]):
                best = min(best, squared_distance(features[i], others[j]))
            nearest_other[i] = best
