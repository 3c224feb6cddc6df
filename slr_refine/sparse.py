"""The sparse distance convention every clustering step here reads and writes.

A clustering distance is a float32 CSR matrix (N, N):

- stored entries are exactly the pairs whose k-reciprocal encodings overlap; a pair that is not
  stored is at the distance ``AbsentPairs`` gives (1 for the Jaccard distance alone);
- a stored distance may be exactly 0 (the diagonal always is; so are identical samples). Those
  entries are explicit zeros and carry meaning: never call ``eliminate_zeros()`` on such a matrix
  and avoid scipy arithmetic (``dist + dist.T``, ``dist * 2``...) that silently drops zeros;
- the matrix is exactly symmetric, with sorted column indices in every row.

``to_dense_distance`` gives the dense equivalent (tests, small N).
"""
import dataclasses
from typing import Optional

import numpy as np
import scipy.sparse as sp

__all__ = ["AbsentPairs", "JACCARD_ABSENT", "to_dense_distance"]


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


def to_dense_distance(dist: sp.csr_matrix, absent: AbsentPairs = JACCARD_ABSENT) -> np.ndarray:
    """Dense equivalent of a sparse distance in this module's convention (tests, small N)."""
    coo = dist.tocoo()
    dense = np.full(dist.shape, absent.base, dtype=dist.dtype)
    if absent.offset is not None:
        offset = absent.offset.astype(dist.dtype)
        dense += offset[:, None] + offset[None, :]
    dense[coo.row, coo.col] = coo.data
    return dense
