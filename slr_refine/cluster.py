"""Clustering of the sparse Jaccard distances (module (d)): DBSCAN, and HDBSCAN for the ablation.

Both read the sparse convention of ``distance.py``: a stored entry is a distance (explicit zeros
included); an absent pair is at the distance ``AbsentPairs`` gives (1 for the Jaccard distance
alone). Neither densifies.
"""
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

from .sparse import JACCARD_ABSENT, AbsentPairs
from .hierarchy import hdbscan_labels_from_spanning_tree

__all__ = ["eps_from_rho", "cluster_dbscan", "cluster_hdbscan"]

ABSENT_DISTANCE = JACCARD_ABSENT.base


def eps_from_rho(dist: sp.csr_matrix, rho: float = 2e-3, absent: AbsentPairs = JACCARD_ABSENT) -> float:
    """ABMT's per-epoch eps: the mean of the smallest ``rho`` fraction of pairwise distances.

    The population is ABMT's: the strict upper triangle of the dense matrix without its exact
    zeros; absent pairs belong to it at their ``absent`` distance. When the smallest distances are
    all stored ones (the usual case: they lie below ``absent.floor``) this is a partial sort of the
    stored values; otherwise the absent pairs are counted in closed form (``_mean_of_smallest``).
    """
    n = dist.shape[0]
    upper = sp.triu(dist, k=1, format="coo")
    nonzero = upper.data != 0
    stored = upper.data[nonzero].astype(np.float64)
    population = n * (n - 1) // 2 - int(np.count_nonzero(~nonzero))
    count = int(np.round(rho * population))
    if count < 1:
        raise ValueError(f"rho={rho} selects no distance out of {population}")
    if count <= stored.size:
        smallest = np.partition(stored, count - 1)[:count]
        if smallest.max() <= absent.floor:
            return float(smallest.sum() / count)
    elif absent.offset is None:  # every absent pair is at absent.base, above every stored one
        return float((stored.sum() + absent.base * (count - stored.size)) / count)
    return _mean_of_smallest(stored, (upper.row, upper.col), count, absent, n)


def _mean_of_smallest(stored: np.ndarray, stored_pairs, count: int, absent: AbsentPairs, n: int) -> float:
    """Mean of the ``count`` smallest of the stored values and every absent pair's distance.

    Absent pairs are all pairs less the stored ones (``stored_pairs``, zeros included); how many of
    them lie below a threshold, and their sum, come from the sorted offsets and prefix sums, so a
    bisection on the threshold finds the count-th smallest distance without listing N² pairs.
    """
    offset = np.zeros(n) if absent.offset is None else absent.offset.astype(np.float64)
    order = np.sort(offset)
    prefix = np.concatenate([[0.0], np.cumsum(order)])
    stored_offsets = offset[stored_pairs[0]] + offset[stored_pairs[1]]

    def below(threshold):
        """(count, sum) of the population's distances <= threshold."""
        in_stored = stored <= threshold
        limit = threshold - absent.base
        # pairs p < q of the sorted offsets with order[p] + order[q] <= limit
        last = np.searchsorted(order, limit - order, side="right")
        partners = np.maximum(last - np.arange(1, n + 1), 0)
        ends = np.maximum(last, np.arange(1, n + 1))
        pair_sum = (partners * order + prefix[ends] - prefix[np.arange(1, n + 1)]).sum()
        stored_too = stored_offsets <= limit  # stored pairs are not absent: take them back out
        absent_count = partners.sum() - np.count_nonzero(stored_too)
        absent_sum = pair_sum - stored_offsets[stored_too].sum() + absent.base * absent_count
        return np.count_nonzero(in_stored) + absent_count, stored[in_stored].sum() + absent_sum

    low = 0.0
    high = max(stored.max(initial=0.0), absent.base + 2 * order[-1])
    while True:
        middle = (low + high) / 2
        if not low < middle < high:
            break
        if below(middle)[0] >= count:
            high = middle
        else:
            low = middle
    # every distance in (low, high] equals the count-th smallest up to float resolution
    count_low, sum_low = below(low)
    return float((sum_low + (count - count_low) * high) / count)


def _neighbour_graph(dist: sp.csr_matrix, eps: float) -> sp.csr_matrix:
    """Boolean CSR of the pairs within eps, compared with sklearn's ``distance <= eps`` rule."""
    dist = sp.csr_matrix(dist)
    within = dist.data <= eps
    # eliminate_zeros works in place: give the graph its own index arrays, not dist's
    graph = sp.csr_matrix((within, dist.indices.copy(), dist.indptr.copy()), shape=dist.shape)
    graph.eliminate_zeros()
    return graph


def cluster_dbscan(dist: sp.csr_matrix, eps: float, min_samples: int = 4,
                   absent: AbsentPairs = JACCARD_ABSENT) -> np.ndarray:
    """DBSCAN labels (-1 noise) equal to sklearn's ``DBSCAN(eps, min_samples, metric='precomputed')``
    on the dense equivalent of ``dist`` (absent pairs at their ``absent`` distance).

    sklearn numbers clusters in order of their lowest-index core sample and gives a border sample
    to the first cluster that reaches it, i.e. the lowest-numbered cluster among its core
    neighbours. Here: core = at least min_samples neighbours (itself included when its stored
    diagonal is within eps) within eps; clusters = connected components of core samples. ``dist``
    must be symmetric (as ``jaccard_distance``'s result is; sklearn's docs require it too).
    Only stored pairs can be neighbours, so eps must stay below ``absent.floor``.
    """
    n = dist.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if np.asarray(absent.floor, dtype=dist.dtype) <= eps:
        if absent.offset is None:  # every pair is a neighbour
            return np.full(n, 0 if n >= min_samples else -1, dtype=np.int64)
        raise ValueError(f"DBSCAN eps {eps:.4f} reaches pairs outside each other's k-reciprocal sets "
                         f"(their distance is at least {absent.floor:.4f}), which the sparse distance "
                         f"does not store: lower SLR.CLUSTER.EPS (or RHO), or SLR.CLUSTER.SOURCE_WEIGHT")

    graph = _neighbour_graph(dist, eps)
    if (graph != graph.T).nnz:
        raise ValueError("cluster_dbscan needs a symmetric distance matrix")
    is_core = np.diff(graph.indptr) >= min_samples
    labels = np.full(n, -1, dtype=np.int64)
    core = np.flatnonzero(is_core)
    if core.size == 0:
        return labels

    _, component = connected_components(graph[core][:, core], directed=False)
    _, first_core = np.unique(component, return_index=True)  # cores ascend, so first = lowest index
    order = np.empty(first_core.size, dtype=np.int64)
    order[np.argsort(first_core)] = np.arange(first_core.size)
    labels[core] = order[component]

    border_graph = graph[~is_core][:, core].tocsr()
    border_graph.sort_indices()
    has_core = np.diff(border_graph.indptr) > 0
    if has_core.any():
        neighbour_labels = labels[core][border_graph.indices]
        starts = border_graph.indptr[:-1][has_core]
        border = np.flatnonzero(~is_core)[has_core]
        labels[border] = np.minimum.reduceat(neighbour_labels, starts)
    return labels


def _core_distances(dist: sp.csr_matrix, min_samples: int) -> np.ndarray:
    """hdbscan's core distance: the min_samples-th smallest distance to another sample."""
    n = dist.shape[0]
    core = np.full(n, ABSENT_DISTANCE)
    counts = np.diff(dist.indptr)
    for i in np.flatnonzero(counts > min_samples):  # row i holds its own zero at the diagonal
        row = dist.data[dist.indptr[i]:dist.indptr[i + 1]]
        core[i] = np.partition(row, min_samples)[min_samples]
    return core


def cluster_hdbscan(dist: sp.csr_matrix, min_cluster_size: int = 7, min_samples: int = None) -> np.ndarray:
    """HDBSCAN labels on the sparse distances, for the module-(d) ablation (DBSCAN → HDBSCAN).

    Same semantics as ``hdbscan.HDBSCAN(min_cluster_size, min_samples, metric='precomputed')`` on the
    dense equivalent (absent = 1; ``min_samples`` not counting the sample itself, default
    min_cluster_size). The minimum spanning tree of the mutual-reachability graph is the spanning
    forest of the stored pairs joined by weight-1 edges, since every absent pair has mutual
    reachability exactly 1; the hdbscan package then condenses it and selects clusters (EOM).
    Equal weights can be tied differently from the package's own Prim's, as in any two MSTs.
    Absent pairs must all be at distance 1 (no source term): see ``AbsentPairs``.
    """
    dist = sp.csr_matrix(dist)
    n = dist.shape[0]
    min_samples = min_cluster_size if min_samples is None else min_samples
    min_samples = max(min(n - 1, min_samples), 1)
    if n < min_cluster_size:
        return np.full(n, -1, dtype=np.int64)

    core = _core_distances(dist, min_samples)
    coo = sp.triu(dist, k=1, format="coo")
    reachability = np.maximum(np.maximum(core[coo.row], core[coo.col]), coo.data)
    # scipy drops zero weights as non-edges, so search the MST on weights shifted by 1
    shifted = sp.coo_matrix((reachability + 1.0, (coo.row, coo.col)), shape=(n, n))
    tree = minimum_spanning_tree(shifted).tocoo()
    tree_distance = np.asarray(dist[tree.row, tree.col]).ravel()
    tree_weight = np.maximum(np.maximum(core[tree.row], core[tree.col]), tree_distance)
    edges = [np.column_stack([tree.row, tree.col, tree_weight])]

    n_forests, forest = connected_components(tree, directed=False)
    if n_forests > 1:
        _, roots = np.unique(forest, return_index=True)
        edges.append(np.column_stack([roots[:-1], roots[1:], np.full(n_forests - 1, ABSENT_DISTANCE)]))
    return hdbscan_labels_from_spanning_tree(np.concatenate(edges), min_cluster_size)
