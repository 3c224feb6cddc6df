"""``slr_epochs.jsonl``: what an adaptation run records of each epoch, written and read here only.

One JSON object per line, appended as the run goes, so a killed run loses at most its last line and
a resumed run appends to what it had:

- ``{"epoch": e, "pseudo_labels": {...}, "eval": {...}, "seconds": {...}}`` after each epoch: the
  epoch's clustering and refinement statistics (and their quality against the true identities,
  where the target has them), its evaluation when there was one (flat, ``utils.numeric_results``),
  and where its time went (``EPOCH_PARTS``);
- ``{"epoch": e, "eval": {...}}`` for the evaluation fast-reid runs after the last epoch when the
  last epoch is off the evaluation period;
- ``{"best_eval_chosen_with_target_labels": {"epoch", "mAP", "Rank-1"}}`` at the end: the best
  evaluated epoch, chosen with the target's labels, so optimistic (the reported figure is the last
  epoch's, final_results.json).

Lines of the same epoch merge, a later one winning (a resumed epoch's).
"""
import json
import os
from typing import Dict, List, Optional

from ..utils import mean_map

__all__ = ["BEST_BY_TARGET_LABELS", "EPOCHS_FILE", "EPOCH_PARTS", "RunRecord", "append_record"]

EPOCHS_FILE = "slr_epochs.jsonl"
BEST_BY_TARGET_LABELS = "best_eval_chosen_with_target_labels"
# Where an epoch's seconds go, in the order they are spent (``seconds`` of an epoch's record):
# teacher feature passes, the clustering distance (search, Jaccard, source term), DBSCAN, SLR's
# refinement (projection, soft labels, hardening), the training steps and the evaluation. A part
# with a "/" is a share of the part before it (``features_target/camera_0``: camera-aware passes).
EPOCH_PARTS = ("features_target", "features_source", "search", "jaccard", "source_term", "cluster", "refine",
               "train", "evaluation")


def append_record(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


class RunRecord:
    """A run's ``slr_epochs.jsonl``, read back."""

    def __init__(self, lines: List[dict]):
        self.epochs: Dict[int, dict] = {}
        self.best_evaluated: Optional[dict] = None
        for line in lines:
            if BEST_BY_TARGET_LABELS in line:
                self.best_evaluated = line[BEST_BY_TARGET_LABELS]
            elif "epoch" in line:
                self.epochs.setdefault(line["epoch"], {}).update(line)

    @classmethod
    def read(cls, run_dir_or_path: str) -> "RunRecord":
        path = run_dir_or_path
        if os.path.isdir(path):
            path = os.path.join(path, EPOCHS_FILE)
        lines = []
        with open(path) as f:
            for line in f:
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line cut short by a killed run
        return cls(lines)

    def pseudo_labels(self) -> List[dict]:
        """Each relabelled epoch's statistics with its ``epoch``, in epoch order."""
        return [{"epoch": e, **r["pseudo_labels"]} for e, r in sorted(self.epochs.items()) if "pseudo_labels" in r]

    def evaluations(self) -> Dict[int, dict]:
        return {e: r["eval"] for e, r in sorted(self.epochs.items()) if "eval" in r}

    def seconds(self) -> Dict[int, dict]:
        return {e: r["seconds"] for e, r in sorted(self.epochs.items()) if "seconds" in r}

    def best_of_evaluations(self) -> Optional[dict]:
        """The evaluated epoch of highest mAP, as ``BEST_BY_TARGET_LABELS`` records it (None without one)."""
        evaluations = self.evaluations()
        if not evaluations:
            return None
        epoch = max(evaluations, key=lambda e: mean_map(evaluations[e]))
        return {"epoch": epoch, "mAP": mean_map(evaluations[epoch]), "Rank-1": evaluations[epoch].get("Rank-1")}

    def time_shares(self) -> Dict[str, float]:
        """Each part's seconds summed over the recorded epochs (``EPOCH_PARTS`` order, then others;
        shares of a part left out)."""
        totals: Dict[str, float] = {}
        for seconds in self.seconds().values():
            for part, value in seconds.items():
                if "/" not in part:
                    totals[part] = totals.get(part, 0.0) + value
        ordered = [p for p in EPOCH_PARTS if p in totals] + sorted(p for p in totals if p not in EPOCH_PARTS)
        return {part: totals[part] for part in ordered}
