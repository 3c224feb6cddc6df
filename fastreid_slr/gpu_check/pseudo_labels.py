"""The pseudo_labels part: the clustering step on every search backend this machine has, which
must all give the same labels."""
import time

import numpy as np
import torch

from slr_refine import BlasSearch, FaissSearch, cluster_dbscan, clustering_distance, eps_from_rho

from ..installed_faiss import faiss_build
from ..neighbour_search import TorchSearch
from .context import DUKE_TRAIN_IMAGES, MARKET_TRAIN_IMAGES
from .part import Part, fmt


def search_backends(device: torch.device) -> dict:
    """The CPU's BLAS blocks, torch on ``device``, and faiss: on the CPU beside a CPU device, on the
    GPU when this faiss build has one."""
    backends = {"blas": BlasSearch(), "torch": TorchSearch(device)}
    if device.type != "cuda":
        backends["faiss"] = FaissSearch()
    elif faiss_build().gpus:
        backends["faiss-gpu"] = FaissSearch(torch.cuda.current_device())
    return backends


class PseudoLabels(Part):
    """The clustering step (ABMT's distance with its source term, DBSCAN) on synthetic teacher
    features at Market scale (the tiny mode: N=1,200, D=64), on each search backend."""

    name = "pseudo_labels"
    what = "clustering step, each search backend"

    def run(self, context) -> dict:
        n, dim, sources = (MARKET_TRAIN_IMAGES, 4096, DUKE_TRAIN_IMAGES) if context.full else (1200, 64, 600)
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(n // 17, dim))
        target = (centres[rng.integers(0, len(centres), n)] + 0.9 * rng.normal(size=(n, dim))).astype(np.float32)
        source = (centres[rng.integers(0, len(centres), sources)] + rng.normal(size=(sources, dim))).astype(np.float32)
        backends = search_backends(context.device)
        result, labels = {"n": n, "dim": dim, "sources": sources}, {}
        for name, backend in backends.items():
            clustering_distance(target[:200], 20, 6, "abmt", source[:50], 0.1, backend)  # compile, CUDA context
            start = time.perf_counter()
            distance = clustering_distance(target, 20, 6, "abmt", source, 0.1, backend)
            labels[name] = cluster_dbscan(distance.dist, eps_from_rho(distance.dist, 0.002, distance.absent), 4,
                                          distance.absent)
            result[name] = {**{f"{part}_s": s for part, s in distance.seconds.items()},
                            "total_s": time.perf_counter() - start, "clusters": int(labels[name].max()) + 1}
        result["backends"] = list(backends)
        result["labels_identical"] = all(np.array_equal(labels["blas"], other) for other in labels.values())
        result["ok"] = result["labels_identical"]
        return result

    def summary(self, result: dict) -> str:
        searches = "; ".join(f"{name}: search {fmt(result[name]['search_s'], ' s')}, step "
                             f"{fmt(result[name]['total_s'], ' s')}" for name in result["backends"])
        return (f"N={result['n']}, D={result['dim']}, {result['sources']} source images; {searches}; "
                f"labels identical {fmt(result['labels_identical'])}")
