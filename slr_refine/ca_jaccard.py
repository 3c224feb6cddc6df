"""CA-Jaccard (Chen, Fan, Chen, Zhu, CVPR 2024): the k-reciprocal neighbourhoods, camera-aware.

Why: an image's nearest images are mostly of its own camera (same backdrop, light, blur), so the
camera-blind k-reciprocal sets hold other people of that camera and miss the same person seen
by another. CA-Jaccard takes the sets on two ranking lists, within the image's camera and across
the other cameras, each with its own size (CKRNNs), and expands each query with a few images of
each list (CLQE). The two lists are two more reductions of the one exact search
(``search.search_neighbours``'s ``within`` / ``across``, certified in float64, ties by index);
the weights, the expansion and the overlap are ``jaccard.py``'s, which takes ``cameras=``.

The definition here (``k1_intra`` 5, ``k1_inter`` 20, ``k2_intra`` 3, ``k2_inter`` 3, the authors'
defaults):

- lists: N_intra(i, k) is the first k+1 images of i's camera by distance, i itself first;
  N_inter(i, k) the first k+1 images of the other cameras. The +1 is the authors' code's (it
  slices k+1 columns of each list, the slot meant for the image itself, which only the intra list
  holds): kept, since their sizes were tuned with it.
- CKRNNs: R(i) = R_intra(i, k1_intra) ∪ R_inter(i, k1_inter), R_x(i, k) = {j ∈ N_x(i, k) : i ∈
  N_x(j, k)}: i belongs to R(i) once, through its own camera. The sets are not expanded (the
  2/3 rule of the camera-blind variants): the authors' code skips it with CKRNNs.
- weights: the variant's kernel over R(i), normalised over R(i): "fastreid" exp(-d²) (the
  authors': 2 - 2·cos on unit features is d²), "abmt" exp(-d² / M_i), M_i the squared distance to
  the farthest image of the whole set (ABMT's row scale).
- CLQE: V'(i) is the mean of V(j) over the first k2_intra of N_intra(i) (i itself first) and the
  first k2_inter of N_inter(i), every row weighted alike (the authors' mean over the k2_intra +
  k2_inter rows). An expansion of one row is none, as fast-reid's k2 = 1.

Where the authors' code (caj/utils/caj_rerank.py) differs from the paper, and we follow the paper:
a camera with fewer images than a list asks for keeps a short list. The paper speaks of
intra-camera and inter-camera ranking lists (its abstract: its equations were not at hand, so
the rest follows the code); the code ranks d² + 999·[other camera] (and + 999·
[same camera]) in float32, so a short intra list goes on with the nearest images of other
cameras, a short inter list with images of the image's own camera (itself included), ordered by
that float32 sum, whose spacing at 999 (6e-5) ties close distances. Where we differ from the code
otherwise: CLQE applies whenever cameras are given (the code gates it on its camera-blind k2 ≠ 1
and forces k2_intra = k2_inter = 3 at epoch 0, the defaults here); ranks are exact, ties by index
(the code's are float32 argpartition ranks, ties unordered); k1 and k2 are unused with cameras
(the code also computes its camera-blind ranks, unused when CKRNNs and CLQE are both on).
"""
import dataclasses

import numpy as np

from .errors import InvalidArgument
from .search import Neighbours

__all__ = ["CameraJaccard"]


@dataclasses.dataclass(frozen=True)
class CameraJaccard:
    """CA-Jaccard's four sizes, checked once here (``InvalidArgument`` names the bad one); how many
    ranks the search must find for them, and the lists CKRNNs and CLQE take from its result."""

    k1_intra: int = 5
    k1_inter: int = 20
    k2_intra: int = 3
    k2_inter: int = 3

    def __post_init__(self):
        for argument, smallest in (("k1_intra", 0), ("k1_inter", 0), ("k2_intra", 1), ("k2_inter", 0)):
            value = getattr(self, argument)
            if not (isinstance(value, (int, np.integer)) and value >= smallest):
                why = " (the image leads its own expansion)" if argument == "k2_intra" else ""
                raise InvalidArgument(argument, f"must be an integer >= {smallest}{why}, got {value!r}")

    @property
    def within(self) -> int:
        """Ranks of each image's own camera the search must give (itself included)."""
        return max(self.k1_intra + 1, self.k2_intra)

    @property
    def across(self) -> int:
        """Ranks of the other cameras the search must give."""
        return max(self.k1_inter + 1, self.k2_inter)

    def reciprocal_lists(self, neighbours: Neighbours) -> np.ndarray:
        """(N, k1_intra+1 + k1_inter+1): N_intra(i, k1_intra) then N_inter(i, k1_inter), -1 where a
        list is short. j is in i's row and i in j's only within one list (j's camera decides
        which), so the reciprocal sets over these rows are R_intra ∪ R_inter."""
        self._check(neighbours)
        return np.concatenate([neighbours.within[:, :self.k1_intra + 1], neighbours.across[:, :self.k1_inter + 1]],
                              axis=1)

    def expansion_rows(self, neighbours: Neighbours) -> np.ndarray:
        """(N, k2_intra + k2_inter): the rows CLQE averages, -1 where a list is short."""
        self._check(neighbours)
        return np.concatenate([neighbours.within[:, :self.k2_intra], neighbours.across[:, :self.k2_inter]], axis=1)

    def _check(self, neighbours: Neighbours) -> None:
        if neighbours.within is None or neighbours.within.shape[1] < self.within \
                or neighbours.across.shape[1] < self.across:
            raise ValueError(f"CA-Jaccard needs {self.within} ranks within each camera and {self.across} across: "
                             f"search with cameras, within and across")
