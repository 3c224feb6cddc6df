"""From a minimum spanning tree of mutual reachability to HDBSCAN labels, by the hdbscan package.

Both exact fast paths here (sparse Jaccard distances, duplicated soft-label rows) build the MST
themselves; everything after it — single-linkage tree, condensed tree, stability, excess-of-mass
selection — is the ``hdbscan`` package's own code, so the cluster selection is the package's.
"""
import numpy as np
from hdbscan._hdbscan_linkage import label
from hdbscan._hdbscan_tree import compute_stability, condense_tree, get_clusters

__all__ = ["hdbscan_labels_from_spanning_tree"]


def hdbscan_labels_from_spanning_tree(edges: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """Labels (-1 noise, clusters 0..K-1) of ``hdbscan.HDBSCAN(min_cluster_size)`` given its MST.

    Args:
        edges: (n-1, 3) rows (point a, point b, mutual reachability), a spanning tree of points
            0..n-1 in any order.
        min_cluster_size: as in ``hdbscan.HDBSCAN``; the defaults of its other selection options
            (EOM, no single cluster, no epsilon) apply.
    """
    edges = np.asarray(edges, dtype=np.float64)
    # np.argsort's default (unstable) sort, as the package sorts its own MST: a stable sort would
    # keep the construction order among equal weights, which measurably biased ties toward noise
    edges = np.ascontiguousarray(edges[np.argsort(edges[:, 2])])
    condensed = condense_tree(label(edges), min_cluster_size)
    labels, _, _ = get_clusters(condensed, compute_stability(condensed), cluster_selection_method="eom",
                                allow_single_cluster=False)
    return labels.astype(np.int64)
