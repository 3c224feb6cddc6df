"""SLRRefiner: the per-epoch state of SLR (the previous epoch's labels) and one refinement step."""
import time
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from .errors import InvalidArgument
from .harden import HARDEN_METHODS, harden
from .labels import relabel_contiguous
from .projection import NORMALIZATIONS, project_soft_labels, sparse_projection

__all__ = ["PREV_SOURCES", "REFINER_HARDEN_METHODS", "RefineResult", "SLRRefiner"]

REFINER_HARDEN_METHODS = HARDEN_METHODS + ("none",)
PREV_SOURCES = ("cluster", "refined")


@dataclass
class RefineResult:
    """One epoch's pseudo-labels.

    hard_labels: contiguous 0..K-1, -1 = drop the sample this epoch.
    soft_labels: (N, Kc) refined soft labels over the current clusters; None when the step passed
        the labels through (first epoch, or refinement disabled): the hard labels are then the
        whole supervision.
    stats: telemetry, see ``SLRRefiner.step``.
    """

    hard_labels: np.ndarray
    soft_labels: Optional[sp.csr_matrix]
    stats: Dict[str, float] = field(default_factory=dict)


def _ari_on_shared(a: np.ndarray, b: np.ndarray) -> float:
    """ARI of two labelings on the samples that are clustered (not -1) in both; NaN below 2."""
    shared = (a >= 0) & (b >= 0)
    return float(adjusted_rand_score(a[shared], b[shared])) if shared.sum() >= 2 else float("nan")


class SLRRefiner:
    """Refines each epoch's cluster labels with the previous epoch's (paper modules (e)-(h)).

    Args:
        alpha: weight of the current one-hot label in Eq. 4 (paper default 0.5).
        normalize: projection normalisation of Eq. 2, one of ``NORMALIZATIONS``.
        harden_method: module (h): "hdbscan" (paper), "dbscan", "max", or "none" (train on the
            soft labels; hard labels are the current cluster labels).
        min_cluster_size: HDBSCAN hardening (hdbscan package convention).
        min_cluster_size_fraction: > 0 replaces ``min_cluster_size`` by this fraction of the
            median size of this epoch's clusters (at least 2): a data-relative module (h), since
            the paper's 7 is ~0.4 x a Market-1501 cluster (~17 images) and drops most clusters of
            a target with fewer images per identity.
        dbscan_eps, dbscan_min_samples: DBSCAN hardening.
        enabled: False = the ABMT baseline: labels pass through untouched.
        prev_source: what becomes next epoch's previous labels: "cluster" (this epoch's DBSCAN
            labels, default) or "refined" (this epoch's hard labels).
        project_outliers: Eq. 3-4 for every sample, as the paper (default): a sample that is an
            outlier now but had a cluster last epoch gets ``(1-α)·Pn[prev]`` and hardening may
            bring it back; False zeroes those rows (ablation).
    """

    def __init__(
        self,
        alpha: float = 0.5,
        normalize: str = "row",
        harden_method: str = "hdbscan",
        min_cluster_size: int = 7,
        min_cluster_size_fraction: float = 0.0,
        dbscan_eps: float = 0.3,
        dbscan_min_samples: int = 4,
        enabled: bool = True,
        prev_source: str = "cluster",
        project_outliers: bool = True,
    ):
        for argument, value, allowed in (("normalize", normalize, NORMALIZATIONS),
                                         ("harden_method", harden_method, REFINER_HARDEN_METHODS),
                                         ("prev_source", prev_source, PREV_SOURCES)):
            if value not in allowed:
                raise InvalidArgument(argument, f"must be one of {allowed}, got {value!r}")
        if not 0.0 <= alpha <= 1.0:
            raise InvalidArgument("alpha", f"must lie in [0, 1] (Eq. 4), got {alpha}")
        if min_cluster_size_fraction < 0:
            raise InvalidArgument("min_cluster_size_fraction", f"must be >= 0, got {min_cluster_size_fraction}")
        self.alpha = alpha
        self.normalize = normalize
        self.harden_method = harden_method
        self.min_cluster_size = min_cluster_size
        self.min_cluster_size_fraction = min_cluster_size_fraction
        self.dbscan_eps = dbscan_eps
        self.dbscan_min_samples = dbscan_min_samples
        self.enabled = enabled
        self.prev_source = prev_source
        self.project_outliers = project_outliers
        self.prev_labels: Optional[np.ndarray] = None
        self.steps = 0

    def step(self, cur_labels) -> RefineResult:
        """Refine this epoch's cluster labels (-1 = outlier) and remember what the next epoch needs.

        stats: clusters_before/after, outliers_before/after, kept_fraction (non -1 after /
        N), revived (outliers of this epoch's clustering that hardening brought back), dropped
        (samples clustered now that hardening made outliers), min_cluster_size (module h's, this
        epoch),
        seconds_projection / seconds_soft_labels / seconds_harden, agreement_with_previous
        (ARI of this epoch's cluster labels vs the previous labels, on samples clustered in both;
        NaN on the first step), hard_vs_current (ARI of the hard vs this epoch's cluster labels, on
        samples clustered in both: how much hardening re-partitioned), refined (1.0 if SLR ran).
        """
        cur = relabel_contiguous(cur_labels)
        prev = self.prev_labels
        if prev is not None and prev.shape != cur.shape:
            raise ValueError(f"{cur.size} labels this epoch, {prev.size} in the previous one")
        seconds = {"projection": 0.0, "soft_labels": 0.0, "harden": 0.0}
        min_cluster_size = self._min_cluster_size(cur)
        soft = None
        hard = cur
        refine = self.enabled and prev is not None
        if refine:
            start = time.perf_counter()
            projection = sparse_projection(prev, cur, self.normalize)
            seconds["projection"] = time.perf_counter() - start
            start = time.perf_counter()
            soft = project_soft_labels(prev, cur, projection, self.alpha, self.project_outliers)
            seconds["soft_labels"] = time.perf_counter() - start
            if self.harden_method != "none":
                start = time.perf_counter()
                hard = harden(
                    soft,
                    method=self.harden_method,
                    min_cluster_size=min_cluster_size,
                    dbscan_eps=self.dbscan_eps,
                    dbscan_min_samples=self.dbscan_min_samples,
                )
                seconds["harden"] = time.perf_counter() - start

        stats = {
            "clusters_before": int(cur.max(initial=-1)) + 1,
            "clusters_after": int(hard.max(initial=-1)) + 1,
            "outliers_before": int((cur < 0).sum()),
            "outliers_after": int((hard < 0).sum()),
            "kept_fraction": float((hard >= 0).mean()) if hard.size else 0.0,
            "revived": int(((cur < 0) & (hard >= 0)).sum()),
            "dropped": int(((cur >= 0) & (hard < 0)).sum()),
            "min_cluster_size": min_cluster_size,
            "agreement_with_previous": _ari_on_shared(cur, prev) if prev is not None else float("nan"),
            "hard_vs_current": _ari_on_shared(hard, cur),
            "refined": float(refine),
        }
        stats.update({f"seconds_{name}": value for name, value in seconds.items()})

        self.prev_labels = cur if self.prev_source == "cluster" else hard
        self.steps += 1
        return RefineResult(hard_labels=hard, soft_labels=soft, stats=stats)

    def _min_cluster_size(self, cur: np.ndarray) -> int:
        if self.min_cluster_size_fraction == 0:
            return self.min_cluster_size
        sizes = np.bincount(cur[cur >= 0])
        return max(2, int(round(self.min_cluster_size_fraction * np.median(sizes)))) if sizes.size else 2

    def state_dict(self) -> dict:
        """Python lists and ints only: loads under ``torch.load(weights_only=True)``, which rejects
        numpy arrays."""
        prev = None if self.prev_labels is None else self.prev_labels.tolist()
        return {"prev_labels": prev, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        prev = state["prev_labels"]
        self.prev_labels = None if prev is None else np.asarray(prev, dtype=np.int64)
        self.steps = int(state["steps"])
