"""Where the exact search's float32 products run on the CPU: BLAS blocks, or faiss's flat indexes.

Both return ``search.Candidates`` as ``search.NeighbourSearch`` describes (the plugin adds torch on
a CUDA device, ``fastreid_slr.neighbour_search.TorchSearch``); ``search.search_neighbours`` then
certifies the ranks in float64, so every backend gives the same neighbours.
"""
import warnings
from typing import Optional

import numba
import numpy as np

from .search import Candidates

try:
    import faiss
except ImportError as exc:  # the package's own faiss check cannot be imported from here (framework-free)
    raise ImportError(f"slr_refine needs faiss ({exc}): pip install faiss-cpu, or faiss-gpu on a "
                      f"CUDA machine (never both)") from exc

__all__ = ["BlasSearch", "FaissSearch"]

# ``_scan_block``'s candidate lists of a target block against target columns, and against source
# columns (only the nearest: the others zero-width).
TARGET_LISTS = ("near", "far", "within", "across")
SOURCE_LISTS = ("other", "none", "none", "none")


@numba.njit(cache=True, inline="always")
def _insert(indices, values, a, index, d):
    """Insert ``d`` (of row ``index``) into row ``a``'s ascending ``values``, dropping the last;
    returns the new last value, the bar the next distance must beat."""
    t = values.shape[1] - 1
    while t > 0 and values[a, t - 1] > d:
        values[a, t] = values[a, t - 1]
        indices[a, t] = indices[a, t - 1]
        t -= 1
    values[a, t] = d
    indices[a, t] = index
    return values[a, values.shape[1] - 1]


@numba.njit(cache=True, inline="always")
def _bar(values, a):
    """What a distance must beat to enter row ``a``'s list: its last value (-inf: no list wanted)."""
    return values[a, values.shape[1] - 1] if values.shape[1] else -np.inf


@numba.njit(cache=True)
def _scan_block(products, row_norms, column_norms, column_offset, row_cameras, column_cameras, near, near_edge, far,
                far_edge, within, within_edge, across, across_edge):
    """Fold one block of products into its rows' running candidates.

    ``near[a]`` / ``near_edge[a]`` (rows of this block) hold each row's smallest float32 distances
    so far, ascending; ``far`` / ``far_edge`` its largest, kept as negated distances (ascending);
    ``within`` / ``across`` its smallest to columns of the same / of another camera. A distance
    enters by insertion, so every row ever left out is beyond the final edge; each row's bars
    are kept in registers, so the common case is one comparison per list.
    """
    by_camera = within.shape[1] + across.shape[1] > 0
    for a in range(products.shape[0]):
        near_bar, far_bar = _bar(near_edge, a), _bar(far_edge, a)
        within_bar, across_bar = _bar(within_edge, a), _bar(across_edge, a)
        row_norm, camera = row_norms[a], row_cameras[a]
        for b in range(products.shape[1]):
            d = row_norm + column_norms[b] - np.float32(2.0) * products[a, b]
            if d < near_bar:
                near_bar = _insert(near, near_edge, a, column_offset + b, d)
            if -d < far_bar:
                far_bar = _insert(far, far_edge, a, column_offset + b, -d)
            if by_camera:
                if camera == column_cameras[b]:
                    if d < within_bar:
                        within_bar = _insert(within, within_edge, a, column_offset + b, d)
                elif d < across_bar:
                    across_bar = _insert(across, across_edge, a, column_offset + b, d)


class BlasSearch:
    """float32 products through numpy's BLAS, ``block_size`` rows by ``block_size`` rows.

    The features against themselves form a symmetric matrix: each pair of blocks is multiplied once
    and folded into both blocks' rows (half the products of a plain search), into every list asked
    for at once (nearest, farthest, nearest of the row's camera and of the others); the source rows
    are folded into the same pass, block by block. Memory: one block of products.
    """

    name = "blas"

    def __init__(self, block_size: int = 2048):
        self.block_size = block_size

    def candidates(self, features, n_near, n_far, others, n_other, cameras=None, n_within=0, n_across=0):
        n, size = len(features), self.block_size
        norms = np.einsum("ij,ij->i", features, features, dtype=np.float64).astype(np.float32)
        other_norms = np.einsum("ij,ij->i", others, others, dtype=np.float64).astype(np.float32) if n_other else None
        counts = {"near": n_near, "far": n_far, "within": n_within, "across": n_across, "other": n_other, "none": 0}
        kept = {name: (np.full((n, count), -1, np.int64), np.full((n, count), np.inf, np.float32))
                for name, count in counts.items()}
        cameras = np.zeros(n, np.int64) if cameras is None else cameras

        def scan(products, rows, column_norms, column_start, column_cameras, names):
            """Fold ``products`` into the candidate lists ``names`` of ``rows``."""
            _scan_block(products, norms[rows], column_norms, column_start, cameras[rows], column_cameras,
                        *[part[rows] for name in names for part in kept[name]])

        for start in range(0, n, size):
            rows = slice(start, min(start + size, n))
            if n_near or n_far or n_within or n_across:
                for column_start in range(start, n, size):
                    columns = slice(column_start, min(column_start + size, n))
                    products = features[rows] @ features[columns].T
                    scan(products, rows, norms[columns], column_start, cameras[columns], TARGET_LISTS)
                    if column_start != start:  # the same products seen from the other block's rows
                        scan(np.ascontiguousarray(products.T), columns, norms[rows], start, cameras[rows],
                             TARGET_LISTS)
            for other_start in range(0, len(others) if n_other else 0, size):
                columns = slice(other_start, min(other_start + size, len(others)))
                scan(features[rows] @ others[columns].T, rows, other_norms[columns], other_start, cameras[:0],
                     SOURCE_LISTS)
        found = {name: kept[name][0] for name in ("far", "other", "within", "across") if counts[name]}
        found.update({f"{name}_edge": kept[name][1][:, -1] for name in list(found)})
        if n_far:
            found["far_edge"] = -found["far_edge"]  # kept negated (``_scan_block``)
        return Candidates(near=kept["near"][0], near_edge=kept["near"][1][:, -1] if n_near else np.zeros(n, np.float32),
                          **found)


# ----------------------------------------------------------------------------------- faiss
class FaissSearch:
    """faiss flat indexes, on the CPU or, with faiss-gpu, on CUDA device ``gpu_device``.

    A faiss search yields one reduction, so the nearest, the farthest (an inner-product index
    queried with -q) and the nearest source rows are three searches. faiss cannot restrict one
    search to a camera: the nearest of a row's own camera and of the others take two searches per
    camera (its rows against its rows, and against every other camera's: together about one more
    full search, and a copy of the other cameras' rows). When faiss has no GPU there, or the GPU
    search fails (out of memory, say), the same searches run on the CPU, with a warning.
    """

    name = "faiss"

    def __init__(self, gpu_device: Optional[int] = None, chunk_size: int = 4096):
        self.gpu_device, self.chunk_size = gpu_device, chunk_size

    def candidates(self, features, n_near, n_far, others, n_other, cameras=None, n_within=0, n_across=0):
        wanted = (features, n_near, n_far, others, n_other, cameras, n_within, n_across)
        if self.gpu_device is None:
            return self._candidates(*wanted, None)
        gpus = faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0
        if self.gpu_device >= gpus:
            warnings.warn(f"faiss sees {gpus} GPU(s), not device {self.gpu_device}; searching on the CPU",
                          RuntimeWarning)
            return self._candidates(*wanted, None)
        try:
            return self._candidates(*wanted, self.gpu_device)
        except RuntimeError as exc:  # faiss reports its C++ errors (e.g. cudaMalloc) as RuntimeError
            warnings.warn(f"faiss GPU search on device {self.gpu_device} failed ({exc}); searching on the CPU",
                          RuntimeWarning)
            return self._candidates(*wanted, None)

    def _candidates(self, features, n_near, n_far, others, n_other, cameras, n_within, n_across, device):
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
        for name, count, same in (("within", n_within, True), ("across", n_across, False)):
            if count:
                found[name], found[f"{name}_edge"] = self._by_camera(features, cameras, count, same, device)
        return Candidates(**found)

    def _by_camera(self, features, cameras, count, same, device):
        """Each row's ``count`` nearest rows of its own camera (``same``) or of the others, -1 and an
        infinite edge where the camera (the others) has fewer rows: then every one of them is there."""
        indices = np.full((len(features), count), -1, np.int64)
        edge = np.full(len(features), np.inf, np.float32)
        for camera in np.unique(cameras):
            rows = np.flatnonzero(cameras == camera)
            base = rows if same else np.flatnonzero(cameras != camera)
            k = min(count, len(base))
            if k:
                distances, found = self._search(faiss.IndexFlatL2, features[base], features[rows], k, device)
                indices[rows, :k] = base[found]
                if k == count:
                    edge[rows] = distances[:, -1]
        return indices, edge

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
