"""Pseudo-label quality against ground-truth identities (for telemetry and benchmarks only)."""
from typing import Dict

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def _pairs(counts: np.ndarray) -> float:
    counts = np.asarray(counts, dtype=np.float64)
    return float((counts * (counts - 1) / 2).sum())


def _noise_as_singletons(labels: np.ndarray) -> np.ndarray:
    """Each outlier its own cluster, so that outliers never count as agreeing with each other."""
    labels = labels.copy()
    noise = labels < 0
    labels[noise] = labels.max(initial=-1) + 1 + np.arange(noise.sum())
    return labels


def label_quality(pred, truth) -> Dict[str, float]:
    """ARI / NMI (outliers as singletons), pairwise precision / recall, cluster and outlier counts.

    Pairwise precision: of the pairs that share a pseudo-label, the fraction that share an
    identity; recall: of the pairs that share an identity, the fraction that share a pseudo-label
    (pairs lost to outliers count as missed).
    """
    pred = np.asarray(pred, dtype=np.int64)
    _, truth = np.unique(np.asarray(truth), return_inverse=True)
    kept = pred >= 0
    contingency = sp.coo_matrix((np.ones(kept.sum()), (pred[kept], truth[kept]))).tocsr()
    same_both = _pairs(contingency.data)
    same_pred = _pairs(np.bincount(pred[kept]))
    same_truth = _pairs(np.bincount(truth))
    singletons = _noise_as_singletons(pred)
    return {
        "ari": float(adjusted_rand_score(truth, singletons)),
        "nmi": float(normalized_mutual_info_score(truth, singletons)),
        "pair_precision": same_both / same_pred if same_pred else float("nan"),
        "pair_recall": same_both / same_truth if same_truth else float("nan"),
        "clusters": int(np.unique(pred[kept]).size),
        "identities": int(np.unique(truth).size),
        "outlier_fraction": float(1 - kept.mean()) if pred.size else float("nan"),
    }
