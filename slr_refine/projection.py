"""IoU projection of the previous epoch's clusters onto the current ones, and refined soft labels
(paper Eq. 1-4, modules (e)-(g)).

Everything comes from one sparse contingency table of (previous, current) label pairs, so the
cost is O(N + pairs) instead of a loop over Kp × Kc cluster pairs.
"""
import numpy as np
import scipy.sparse as sp

__all__ = ["NORMALIZATIONS", "iou_projection", "sparse_projection", "project_soft_labels", "refine_soft_labels"]

NORMALIZATIONS = ("row", "col", "none", "softmax")


def _as_labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("labels must be a 1-D integer array")
    if labels.size and labels.min() < -1:
        raise ValueError("labels must be -1 (outlier) or a cluster id >= 0")
    return labels.astype(np.int64)


def _paired_labels(prev_labels, cur_labels):
    prev, cur = _as_labels(prev_labels), _as_labels(cur_labels)
    if prev.shape != cur.shape:
        raise ValueError(f"previous and current labels differ in length: {prev.size} vs {cur.size}")
    return prev, cur


def _iou_sparse(prev: np.ndarray, cur: np.ndarray) -> sp.csr_matrix:
    """Eq. 1 on the nonzero pairs: |A_a ∩ B_b| / (|A_a| + |B_b| - |A_a ∩ B_b|).

    |A_a| and |B_b| are full cluster sizes: members that are outliers in the other epoch still
    count in the union; outliers (-1) never count in an intersection.
    """
    n_prev, n_cur = int(prev.max(initial=-1)) + 1, int(cur.max(initial=-1)) + 1
    size_prev = np.bincount(prev[prev >= 0], minlength=n_prev)
    size_cur = np.bincount(cur[cur >= 0], minlength=n_cur)
    both = (prev >= 0) & (cur >= 0)
    overlap = sp.coo_matrix(
        (np.ones(int(both.sum())), (prev[both], cur[both])), shape=(n_prev, n_cur)
    ).tocsr()  # sums duplicate pairs into intersection sizes
    rows = np.repeat(np.arange(n_prev), np.diff(overlap.indptr))
    overlap.data = overlap.data / (size_prev[rows] + size_cur[overlap.indices] - overlap.data)
    return overlap


def _normalized(iou: sp.csr_matrix, normalize: str) -> sp.csr_matrix:
    """Eq. 2. Rows (or columns) without any overlap stay zero in every mode: no evidence, no mass."""
    if normalize == "none":
        return iou
    if normalize == "row":
        sums = np.asarray(iou.sum(axis=1)).ravel()
        return sp.csr_matrix(sp.diags(np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)) @ iou)
    if normalize == "col":
        sums = np.asarray(iou.sum(axis=0)).ravel()
        return sp.csr_matrix(iou @ sp.diags(np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)))
    if normalize == "softmax":  # over all current clusters, so a row becomes dense
        dense = iou.toarray()
        has_overlap = np.diff(iou.indptr) > 0
        if has_overlap.any():
            exp = np.exp(dense[has_overlap] - dense[has_overlap].max(axis=1, keepdims=True))
            dense[has_overlap] = exp / exp.sum(axis=1, keepdims=True)
        return sp.csr_matrix(dense)
    raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")


def sparse_projection(prev_labels, cur_labels, normalize: str = "row") -> sp.csr_matrix:
    """Normalised projection matrix Pn (Kp, Kc), Kp = max(prev)+1, Kc = max(cur)+1 (Eq. 1-2).

    normalize: "row" (each row a distribution over current clusters; the paper's choice), "col",
    "none" (raw IoU) or "softmax" (row softmax); all-zero rows/columns stay zero in every mode.
    """
    prev, cur = _paired_labels(prev_labels, cur_labels)
    return _normalized(_iou_sparse(prev, cur), normalize)


def iou_projection(prev_labels, cur_labels, normalize: str = "row") -> np.ndarray:
    """Dense ``sparse_projection``: Pn as an ndarray (Kp, Kc)."""
    return sparse_projection(prev_labels, cur_labels, normalize).toarray()


def project_soft_labels(prev_labels, cur_labels, projection: sp.csr_matrix, alpha: float = 0.5,
                        project_outliers: bool = True) -> sp.csr_matrix:
    """Refined soft labels y (N, Kc), Eq. 3-4: ``y_i = α·onehot(cur_i) + (1-α)·Pn[prev_i, :]``.

    The one-hot part is zero where cur_i = -1 and the projected part is zero where prev_i = -1.
    ``project_outliers`` (the paper: every sample's previous label is projected) gives a sample
    that is an outlier now but had a cluster before the row ``(1-α)·Pn[prev_i]``, so hardening can
    bring it back; False zeroes every row with cur_i = -1 (an ablation: hardening can then only
    split or drop). A row that is -1 in both epochs is always zero: hardening never sees it.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    prev, cur = _paired_labels(prev_labels, cur_labels)
    projection = sp.csr_matrix(projection)
    n, n_prev, n_cur = prev.size, projection.shape[0], projection.shape[1]
    if n_prev != int(prev.max(initial=-1)) + 1 or n_cur != int(cur.max(initial=-1)) + 1:
        raise ValueError(f"projection {projection.shape} does not match the labels")

    labelled = np.flatnonzero(cur >= 0)
    current = sp.csr_matrix((np.full(labelled.size, alpha), (labelled, cur[labelled])), shape=(n, n_cur))
    projected_rows = np.flatnonzero((prev >= 0) & ((cur >= 0) | project_outliers))
    pick_previous = sp.csr_matrix(
        (np.ones(projected_rows.size), (projected_rows, prev[projected_rows])), shape=(n, n_prev)
    )
    soft = sp.csr_matrix(current + (1.0 - alpha) * (pick_previous @ projection))
    soft.eliminate_zeros()
    soft.sort_indices()
    return soft


def refine_soft_labels(prev_labels, cur_labels, alpha: float = 0.5, normalize: str = "row",
                       project_outliers: bool = True) -> sp.csr_matrix:
    """Eq. 1-4 in one call: ``project_soft_labels`` with ``sparse_projection(prev, cur, normalize)``."""
    return project_soft_labels(prev_labels, cur_labels, sparse_projection(prev_labels, cur_labels, normalize),
                               alpha, project_outliers)
