"""Hard labels from refined soft labels (module (h)): HDBSCAN (the paper), DBSCAN or argmax.

Only rows with some mass are clustered: an all-zero row (a current outlier) is one point repeated
thousands of times and would form one giant cluster, so it comes back -1.

Exact fast HDBSCAN. Samples sharing a (previous, current) cluster pair have identical soft labels
(1,774 distinct rows among 12,936 in the Market-scale benchmark). HDBSCAN on the full multiset
needs, per copy, the core distance = distance to its min_samples-th other point *in the multiset*
(its own duplicates count, at distance 0), and the minimum spanning tree of mutual reachability.
That MST is the MST over the distinct rows (mutual reachability with the multiset core distances)
plus, for each row with m copies, m-1 edges of weight equal to its core distance: no edge leaving
a group of copies is lighter than its core distance (cycle property). The hdbscan package's own
condensed tree and EOM selection then run on that MST (``hierarchy.py``). Dropping the
multiplicities instead is wrong (ARI 0.007 against the plain call in the tests): density is the
point. Cost O(U² · nnz(row)) for U distinct rows, O(U + N) memory.

Distances are summed over the merged sparse supports in column order, the same float sums as the
package's dense loop, and the Prim's tie rules mirror ``mst_linkage_core_vector``; the tests check
that core distances and the MST's weights equal the package's. What remains is tie order: soft
labels hold thousands of exactly equal distances, several MSTs are minimal, and the plain call's
own result depends on row order, so the fast path is checked by agreement with the plain call
(ARI), not by equality; docs/performance.md has the measured agreement and times.
"""
import numba
import numpy as np
import scipy.sparse as sp
from sklearn.cluster import DBSCAN

from .hierarchy import hdbscan_labels_from_spanning_tree
from .labels import relabel_contiguous

__all__ = ["HARDEN_METHODS", "harden"]

HARDEN_METHODS = ("hdbscan", "dbscan", "max")


def _canonical_csr(soft_labels) -> sp.csr_matrix:
    soft = sp.csr_matrix(soft_labels, dtype=np.float64, copy=True)
    soft.sum_duplicates()
    soft.eliminate_zeros()
    soft.sort_indices()
    return soft


def _distinct_rows(soft: sp.csr_matrix):
    """Distinct rows in order of first appearance: (their csr, first row, row -> distinct, counts)."""
    first_of = {}
    inverse = np.empty(soft.shape[0], dtype=np.int64)
    for row in range(soft.shape[0]):
        start, stop = soft.indptr[row], soft.indptr[row + 1]
        key = (soft.indices[start:stop].tobytes(), soft.data[start:stop].tobytes())
        inverse[row] = first_of.setdefault(key, len(first_of))
    first = np.full(len(first_of), soft.shape[0], dtype=np.int64)
    np.minimum.at(first, inverse, np.arange(soft.shape[0]))
    return soft[first], first, inverse, np.bincount(inverse, minlength=first.size)


@numba.njit(cache=True)
def _euclidean(indptr, indices, values, a, b):
    """||row a - row b|| summed over the merged supports in column order (= the dense float sum)."""
    s, s_end, t, t_end = indptr[a], indptr[a + 1], indptr[b], indptr[b + 1]
    total = 0.0
    while s < s_end or t < t_end:
        if t == t_end or (s < s_end and indices[s] < indices[t]):
            diff = values[s]
            s += 1
        elif s == s_end or indices[t] < indices[s]:
            diff = -values[t]
            t += 1
        else:
            diff = values[s] - values[t]
            s += 1
            t += 1
        total += diff * diff
    return np.sqrt(total)


@numba.njit(cache=True)
def _multiset_core_distances(indptr, indices, values, counts, min_samples):
    """Distance from a copy of each distinct row to its min_samples-th other point of the multiset."""
    n = counts.shape[0]
    core = np.zeros(n)
    best_distance = np.empty(min_samples + 1)
    best_count = np.empty(min_samples + 1, dtype=np.int64)
    for u in range(n):
        needed = min_samples - (counts[u] - 1)  # own duplicates sit at distance 0
        if needed <= 0:
            continue
        kept = 0  # best_* hold the nearest rows, ascending, just covering `needed` points
        covered = 0
        for v in range(n):
            if v == u:
                continue
            distance = _euclidean(indptr, indices, values, u, v)
            if covered >= needed and distance >= best_distance[kept - 1]:
                continue
            slot = kept
            while slot > 0 and best_distance[slot - 1] > distance:
                best_distance[slot] = best_distance[slot - 1]
                best_count[slot] = best_count[slot - 1]
                slot -= 1
            best_distance[slot] = distance
            best_count[slot] = counts[v]
            kept += 1
            covered = 0
            for slot in range(kept):  # drop rows no longer needed to reach `needed` points
                covered += best_count[slot]
                if covered >= needed:
                    kept = slot + 1
                    break
        core[u] = best_distance[kept - 1]
    return core


@numba.njit(cache=True)
def _mutual_reachability_mst(indptr, indices, values, core):
    """Prim's MST of max(d(u, v), core[u], core[v]) over the distinct rows, tie rules as hdbscan's."""
    n = core.shape[0]
    edges = np.empty((max(n - 1, 0), 3))
    in_tree = np.zeros(n, dtype=np.bool_)
    reach = np.full(n, np.inf)
    source = np.zeros(n, dtype=np.int64)
    node = 0
    for step in range(n - 1):
        in_tree[node] = True
        best, best_node = np.inf, 0
        for j in range(n):
            if in_tree[j]:
                continue
            candidate = max(_euclidean(indptr, indices, values, node, j), core[node], core[j])
            if candidate < reach[j]:
                reach[j] = candidate
                source[j] = node
            if reach[j] < best:
                best, best_node = reach[j], j
        edges[step, 0], edges[step, 1], edges[step, 2] = source[best_node], best_node, best
        node = best_node
    return edges


def _spanning_tree_of_duplicated_rows(rows: sp.csr_matrix, min_samples: int):
    """MST of HDBSCAN's mutual reachability over every row, and each row's core distance, built
    from the distinct rows and their multiplicities (module docstring)."""
    distinct, first, inverse, counts = _distinct_rows(rows)
    arrays = (distinct.indptr.astype(np.int64), distinct.indices.astype(np.int64), distinct.data)
    core = _multiset_core_distances(*arrays, counts, min_samples)
    tree = _mutual_reachability_mst(*arrays, core)
    tree[:, :2] = first[tree[:, :2].astype(np.int64)]  # distinct row -> its first sample

    copies = np.flatnonzero(np.arange(rows.shape[0]) != first[inverse])
    copy_edges = np.column_stack([first[inverse[copies]], copies, core[inverse[copies]]])
    return np.concatenate([tree, copy_edges]), core[inverse]


def _hdbscan_on_duplicated_rows(rows: sp.csr_matrix, min_cluster_size: int, min_samples: int) -> np.ndarray:
    """The exact fast path: the package's cluster selection on the MST built above."""
    edges, _ = _spanning_tree_of_duplicated_rows(rows, min_samples)
    return hdbscan_labels_from_spanning_tree(edges, min_cluster_size)


def _hdbscan_plain(rows: sp.csr_matrix, min_cluster_size: int, min_samples: int) -> np.ndarray:
    """The package's own call on every row (the reference the fast path is measured against)."""
    import hdbscan

    return hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples).fit_predict(rows.toarray())


def harden(
    soft_labels,
    method: str = "hdbscan",
    min_cluster_size: int = 7,
    min_samples: int = None,
    dbscan_eps: float = 0.3,
    dbscan_min_samples: int = 4,
    plain_hdbscan: bool = False,
) -> np.ndarray:
    """Hard labels (contiguous 0..K-1, -1 noise) from soft labels (N, K) (module (h)).

    Args:
        soft_labels: refined soft labels, sparse or dense; all-zero rows come back -1.
        method: "hdbscan" (the paper), "dbscan" or "max" (argmax of each nonzero row).
        min_cluster_size: HDBSCAN's minimum cluster size (paper: 7).
        min_samples: HDBSCAN's min_samples, the hdbscan package's convention (not counting the point
            itself); default min_cluster_size as in the package.
        dbscan_eps, dbscan_min_samples: DBSCAN's parameters on the Euclidean soft labels (sklearn
            convention: min_samples counts the point itself).
        plain_hdbscan: call ``hdbscan.HDBSCAN`` on every row instead of the exact fast path
            (minutes instead of a second at Market scale; for comparisons).
    """
    if method not in HARDEN_METHODS:
        raise ValueError(f"method must be one of {HARDEN_METHODS}, got {method!r}")
    soft = _canonical_csr(soft_labels)
    labels = np.full(soft.shape[0], -1, dtype=np.int64)
    nonzero = np.flatnonzero(np.diff(soft.indptr) > 0)
    rows = soft[nonzero]

    if method == "max":
        labels[nonzero] = np.asarray(rows.argmax(axis=1)).ravel()
    elif method == "dbscan":
        distinct, _, inverse, counts = _distinct_rows(rows)
        # identical rows share a neighbourhood, so weighting distinct rows by their copies is exact
        clustering = DBSCAN(eps=dbscan_eps, min_samples=dbscan_min_samples).fit(distinct, sample_weight=counts)
        labels[nonzero] = clustering.labels_[inverse]
    elif nonzero.size >= max(min_cluster_size, 2):
        min_samples = min_cluster_size if min_samples is None else min_samples
        min_samples = max(min(nonzero.size - 1, min_samples), 1)  # as the package clips it
        run = _hdbscan_plain if plain_hdbscan else _hdbscan_on_duplicated_rows
        labels[nonzero] = run(rows, min_cluster_size, min_samples)
    return relabel_contiguous(labels)
