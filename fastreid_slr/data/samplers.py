"""Samplers of the plugin's loaders, endless and repeatable under a seed: cross-camera PK batches
(ABMT's) and plain reshuffles (stage 1's target images).

A batch holds P identities × K instances. Re-ID is evaluated across cameras, so ABMT draws an
identity's K-1 other instances from cameras other than its anchor's whenever it has any: the
triplet and classification terms then see the same person under different light and viewpoint
in every batch, which is what the clusters of a camera-biased model most need.
"""
import itertools
from collections import defaultdict
from typing import Iterator, List, Optional, Sequence

import numpy as np
from torch.utils.data import Sampler

from fastreid.utils import comm

__all__ = ["CrossCameraIdentitySampler", "EndlessShuffle"]


class CrossCameraIdentitySampler(Sampler):
    """P × K batches (P = ``mini_batch_size // num_instances``) over ``(path, pid, camid)`` items.

    Per identity: a random anchor, then K-1 partners drawn from its images in other cameras
    (without replacement when there are enough), else from its other images, else the anchor
    repeated. Each pass shuffles the identities and drops the remainder that cannot fill a global
    batch, so the P × world identities of one step are distinct. All ranks draw the same stream
    from a private generator (fast-reid's samplers use numpy's global one inside loader threads,
    where two samplers race); rank r takes every world-th identity group.
    """

    def __init__(self, data_source: Sequence, mini_batch_size: int, num_instances: int,
                 seed: Optional[int] = None):
        if num_instances < 1 or mini_batch_size % num_instances:
            raise ValueError(f"the per-rank batch ({mini_batch_size}) must be a multiple of "
                             f"DATALOADER.NUM_INSTANCE ({num_instances})")
        members = defaultdict(list)
        for index, (_, pid, camid) in enumerate(data_source):
            members[pid].append((index, camid))
        self.instances = num_instances
        self.ids_per_batch = mini_batch_size // num_instances
        self.members = [np.array([i for i, _ in m]) for m in members.values()]
        self.cameras = [np.array([str(c) for _, c in m]) for m in members.values()]
        self.rank, self.world = comm.get_rank(), comm.get_world_size()
        needed = self.ids_per_batch * self.world
        if len(self.members) < needed:
            raise ValueError(f"{len(self.members)} identities cannot fill a batch of {needed} identities "
                             f"(SOLVER.IMS_PER_BATCH / DATALOADER.NUM_INSTANCE)")
        self.seed = comm.shared_random_seed() if seed is None else int(seed)

    def __iter__(self) -> Iterator[int]:
        groups = itertools.islice(self._groups(), self.rank, None, self.world)
        return itertools.chain.from_iterable(groups)

    def _groups(self) -> Iterator[List[int]]:
        rng = np.random.default_rng(self.seed)
        per_pass = len(self.members) - len(self.members) % (self.ids_per_batch * self.world)
        while True:
            for identity in rng.permutation(len(self.members))[:per_pass]:
                yield self._instances(identity, rng)

    def _instances(self, identity: int, rng: np.random.Generator) -> List[int]:
        members, cameras = self.members[identity], self.cameras[identity]
        anchor = int(rng.integers(len(members)))
        candidates = members[cameras != cameras[anchor]]
        if candidates.size == 0:
            candidates = np.delete(members, anchor)
        if candidates.size == 0:
            candidates = members
        wanted = self.instances - 1
        partners = rng.choice(candidates, size=wanted, replace=candidates.size < wanted)
        return [int(members[anchor]), *map(int, partners)]


class EndlessShuffle(Sampler):
    """Endless reshuffles of ``range(size)``, this rank's share, from a private generator.

    fast-reid's TrainingSampler draws from numpy's global generator in its loader's prefetch
    thread; beside the source loader's identity sampler doing the same in another thread, the
    two interleave by timing and a SEEDed stage 1 did not repeat.
    """

    def __init__(self, size: int):
        self.size = size
        self.seed = comm.shared_random_seed()  # the same on every rank

    def __iter__(self):
        return itertools.islice(self._endless(), comm.get_rank(), None, comm.get_world_size())

    def _endless(self):
        rng = np.random.default_rng(self.seed)
        while True:
            yield from rng.permutation(self.size).tolist()
