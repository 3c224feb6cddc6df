"""The Jaccard distance of k-reciprocal encodings, sparse: d(i, j) = 1 - m / (2 - m), m = Σ_k min(V[i,k], V[j,k]).

Every variant (``jaccard.py``, CA-Jaccard's too) ends here: the distance is stored for exactly
the pairs whose encodings overlap, in the sparse convention of ``sparse.py``, at a cost of
O(Σ_k nnz(column k)) per row, never O(N).
"""
import numba
import numpy as np
import scipy.sparse as sp

__all__ = ["encoding_distance", "grow"]


@numba.njit(cache=True)
def grow(buffer, used, extra):
    """Return ``buffer`` or a copy at least twice as large, so that ``used + extra`` fits."""
    if used + extra <= buffer.shape[0]:
        return buffer
    grown = np.empty(max(2 * buffer.shape[0], used + extra), dtype=buffer.dtype)
    grown[:used] = buffer[:used]
    return grown


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
        indices = grow(indices, used, n_partners)
        values = grow(values, used, n_partners)
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


def encoding_distance(encoding: sp.csr_matrix) -> sp.csr_matrix:
    """float32 CSR (N, N) of the Jaccard distance of the rows of ``encoding`` (V, N x N)."""
    n = encoding.shape[0]
    encoding.sort_indices()
    by_column = encoding.tocsc()
    by_column.sort_indices()
    upper_ptr, upper_idx, upper_val = _jaccard_upper(
        encoding.indptr.astype(np.int64), encoding.indices.astype(np.int64), encoding.data,
        by_column.indptr.astype(np.int64), by_column.indices.astype(np.int64), by_column.data,
    )
    indptr, indices, values = _symmetric_with_zero_diagonal(n, upper_ptr, upper_idx, upper_val)
    return sp.csr_matrix((values, indices, indptr), shape=(n, n))
