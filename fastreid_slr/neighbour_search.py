"""Where the clustering's exact neighbour search runs (``SLR.CLUSTER.SEARCH``).

``slr_refine.search_neighbours`` takes its float32 products from a backend and certifies the ranks
in float64, so every backend gives the same neighbours. This module adds the one ``slr_refine``
cannot hold (it is torch-free): ``TorchSearch``, the products on the run's CUDA device, which
needs no faiss-gpu (whose wheels often do not install for a new CUDA or GPU).
"""
import contextlib
import warnings
from typing import Optional

import numpy as np
import torch

from slr_refine import BlasSearch, FaissSearch, NeighbourSearch
from slr_refine.search import Candidates

__all__ = ["SEARCH_BACKENDS", "TorchSearch", "build_neighbour_search", "faiss_gpu_device"]

# "auto": torch on a CUDA device, BLAS blocks on the CPU (the faster there: docs/performance.md).
SEARCH_BACKENDS = ("auto", "blas", "torch", "faiss")


@contextlib.contextmanager
def _ieee_float32_matmul():
    """float32 products without TF32 (whose 10-bit mantissa would break the error bound)."""
    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        yield
    finally:
        matmul.allow_tf32 = saved


class TorchSearch:
    """float32 products in torch on ``device``, ``block_rows`` query rows at a time: each block's
    nearest, farthest and nearest-source candidates are ``topk`` reductions of its products, and
    with camera ids its nearest of the same and of the other cameras ``topk`` of the block masked
    by camera (the masked copies halve the rows of a block).

    Out of device memory, the search runs on the CPU (``BlasSearch``) with a warning.
    """

    name = "torch"

    def __init__(self, device="cuda", max_block_bytes: int = 2 ** 28):
        self.device = torch.device(device)
        self.max_block_bytes = max_block_bytes

    def candidates(self, features, n_near, n_far, others, n_other, cameras=None, n_within=0,
                   n_across=0) -> Candidates:
        wanted = (features, n_near, n_far, others, n_other, cameras, n_within, n_across)
        try:
            with _ieee_float32_matmul():
                return self._candidates(*wanted)
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            warnings.warn(f"the neighbour search ran out of memory on {self.device} ({str(exc).splitlines()[0]}); "
                          f"searching on the CPU", RuntimeWarning)
            return BlasSearch().candidates(*wanted)

    @torch.no_grad()
    def _candidates(self, features, n_near, n_far, others, n_other, cameras, n_within, n_across) -> Candidates:
        base = torch.from_numpy(features).to(self.device)
        norms = (base.double() ** 2).sum(1).float()
        other_base = other_norms = None
        if n_other:
            other_base = torch.from_numpy(others).to(self.device)
            other_norms = (other_base.double() ** 2).sum(1).float()
        by_camera = bool(n_within or n_across)
        camera_ids = torch.from_numpy(cameras).to(self.device) if by_camera else None
        widest = max(len(features), len(others) if n_other else 0)
        rows = int(max(1, min(4096, self.max_block_bytes // (4 * widest * (2 if by_camera else 1)))))
        parts = {key: [] for name in ("near", "far", "other", "within", "across") for key in (name, name + "_edge")}
        for start in range(0, len(features), rows):
            block = base[start:start + rows]
            if n_near or n_far or by_camera:
                distances = norms[start:start + rows, None] + norms[None, :] - 2 * (block @ base.T)
                self._keep(parts, "near", distances, n_near, largest=False)
                self._keep(parts, "far", distances, n_far, largest=True)
                if by_camera:
                    same = camera_ids[start:start + rows, None] == camera_ids[None, :]
                    self._keep(parts, "within", distances.masked_fill(~same, float("inf")), n_within, largest=False)
                    self._keep(parts, "across", distances.masked_fill(same, float("inf")), n_across, largest=False)
                    del same
                del distances
            if n_other:
                distances = norms[start:start + rows, None] + other_norms[None, :] - 2 * (block @ other_base.T)
                self._keep(parts, "other", distances, n_other, largest=False)
                del distances
        found = {key: np.concatenate(chunks) for key, chunks in parts.items() if chunks}
        if not n_near:
            found["near"], found["near_edge"] = np.zeros((len(features), 0), np.int64), np.zeros(len(features), np.float32)
        return Candidates(**found)

    @staticmethod
    def _keep(parts, key, distances, count, largest):
        """The block's ``count`` extreme candidates; -1 for a masked (infinite) one."""
        if count:
            values, indices = torch.topk(distances, count, dim=1, largest=largest, sorted=True)
            parts[key].append(torch.where(torch.isinf(values), -1, indices).cpu().numpy())
            parts[key + "_edge"].append(values[:, -1].cpu().numpy())


def faiss_gpu_device() -> Optional[int]:
    """This rank's CUDA device for a faiss GPU index (None without CUDA), torch's cached blocks
    released first: faiss allocates outside torch's caching allocator, and a training run's cache
    can hold nearly all of the device's memory."""
    if not torch.cuda.is_available():
        return None
    torch.cuda.empty_cache()
    return torch.cuda.current_device()


def build_neighbour_search(name: str, device: str) -> NeighbourSearch:
    """The backend ``SLR.CLUSTER.SEARCH`` names, for a run on ``device`` (MODEL.DEVICE)."""
    if name not in SEARCH_BACKENDS:
        raise ValueError(f"SLR.CLUSTER.SEARCH must be one of {SEARCH_BACKENDS}, got {name!r}")
    on_cuda = str(device).startswith("cuda") and torch.cuda.is_available()
    if name == "auto":
        name = "torch" if on_cuda else "blas"
    if name == "torch":
        return TorchSearch(torch.cuda.current_device() if on_cuda else "cpu")
    if name == "faiss":
        return FaissSearch(faiss_gpu_device() if on_cuda else None)
    return BlasSearch()
