"""Compile every numba kernel of the pseudo-label step ahead of training: ``python -m slr_refine.warm_up``.

The kernels are cached on disk (``numba.njit(cache=True)``) once compiled for the argument types
they meet, which takes ~10 s on two cores: ``make setup`` runs this so that a user's first epoch
does not. It runs the whole step on a few hundred synthetic rows with the dtypes of a real run,
including ties that send rows to the float64 fallback of the search.
"""
import time

import numpy as np

from .cluster import cluster_dbscan, eps_from_rho
from .distance import clustering_distance
from .refiner import SLRRefiner
from .search import search_neighbours
from .search_backends import BlasSearch


def compile_kernels() -> float:
    """Run each kernel once on synthetic data; returns the seconds it took."""
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 32))
    features = (centres[rng.integers(0, 12, 240)] + 0.3 * rng.normal(size=(240, 32))).astype(np.float32)
    source = (centres[rng.integers(0, 12, 60)] + 0.3 * rng.normal(size=(60, 32))).astype(np.float32)
    lattice = rng.integers(0, 3, size=(60, 4)).astype(np.float32)  # ties: the float64 fallback
    search_neighbours(lattice, 8, farthest=True, others=lattice[:10], backend=BlasSearch(block_size=16),
                      cameras=np.arange(60) % 3, within=4, across=6)
    refiner = SLRRefiner(min_cluster_size=4)
    for variant, cameras in (("fastreid", None), ("abmt", None), ("abmt", np.arange(240) % 4)):  # last: CA-Jaccard
        distance = clustering_distance(features, k1=10, k2=3, variant=variant, source=source, source_weight=0.1,
                                       cameras=cameras)
        labels = cluster_dbscan(distance.dist, eps_from_rho(distance.dist, 0.05, distance.absent), 4, distance.absent)
        refiner.step(labels)
    return time.perf_counter() - start


if __name__ == "__main__":
    print(f"slr_refine: numba kernels compiled (or loaded from their cache) in {compile_kernels():.1f}s")
