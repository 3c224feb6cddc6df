"""Hooks of SLR adaptation: per-epoch pseudo-labels, the teacher's EMA after every step, and the
epoch's record (``records.py``)."""
import logging
import time
from typing import Dict, Optional, Protocol, Sequence

import numpy as np
import torch
import torch.distributed as dist
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm
from fastreid.utils.events import EventStorage

from slr_refine.quality import label_quality

from ..utils import numeric_results, unwrap
from .pseudo_labels import PseudoLabels
from .records import BEST_BY_TARGET_LABELS, RunRecord, append_record

logger = logging.getLogger(__name__)


class AdaptationTrainer(Protocol):
    """What ``PseudoLabelHook`` needs of its trainer (``SLRTrainer`` is one)."""

    epoch: int
    max_epoch: int
    storage: EventStorage
    epoch_seconds: Dict[str, float]  # this epoch's seconds by part (``records.EPOCH_PARTS``), so far

    def extract_target_features(self) -> np.ndarray:
        """Teacher eval features of the target train set, in dataset order, on every rank."""

    def extract_source_features(self) -> np.ndarray:
        """The same for the source train set (the clustering distance's source term)."""

    def train_labels_missing(self) -> bool:
        """True while no labels were given since the trainer was built (a resume between clusterings)."""

    def set_train_labels(self, labels: np.ndarray, soft_labels=None, centroids: Optional[torch.Tensor] = None):
        """Train on ``labels`` (-1 dropped) from now on; ``centroids`` resize and seed the classifiers."""

    def last_evaluation(self):
        """The latest evaluation results, or None."""


class Labeler(Protocol):
    """What ``PseudoLabelHook`` needs of its labeler: ``PseudoLabeler`` (clustering and SLR's
    refinement), ``TrueIdentityLabeler`` (the true-identity control), or a project's own, given to
    the trainer by overriding ``SLRTrainer.build_labeler``."""

    needs_source_features: bool  # whether __call__ wants the source train set's features too

    def __call__(self, features: np.ndarray, source_features: Optional[np.ndarray] = None) -> PseudoLabels:
        """This epoch's labels (-1: not trained on) from the teacher features of the target train set."""

    def advice(self, stats: dict, num_items: int) -> str:
        """What to change when the labels of ``stats`` hold too few clusters for a batch."""

    def state_dict(self) -> dict:
        """What a resume needs (lists and numbers only: checkpoints load with ``weights_only``)."""

    def load_state_dict(self, state: dict) -> None:
        ...


def _broadcast_from_main(obj):
    """Rank 0's ``obj`` on every rank, pickled over fast-reid's gloo group, never the default one:
    on GPUs that is NCCL, whose watchdog (10 min) would end the ranks waiting here while rank 0
    clusters. gloo's own timeout is torch's default, 30 min."""
    if comm.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=comm._get_global_gloo_group())
    return box[0]


class TeacherEMAHook(HookBase):
    """After every optimiser step, move the teacher one EMA step towards the student; under
    ``SOLVER.AMP`` not after a step the grad scaler skipped (inf/NaN gradients: the student did not
    move, and neither must the teacher or its EMA step count).

    Under DDP (``broadcast_buffers=False``) each rank's BN statistics follow its own batches; at
    each epoch's end, before evaluation and the next clustering, every rank takes rank 0's, so
    that all ranks extract features with the one model rank 0 checkpoints.
    """

    def before_step(self):
        scaler = getattr(self.trainer, "grad_scaler", None)
        self._scale = scaler.get_scale() if scaler is not None else None

    def after_step(self):
        scaler = getattr(self.trainer, "grad_scaler", None)
        if scaler is not None and scaler.get_scale() < self._scale:
            return  # the scaler found inf/NaN gradients, skipped the step and lowered its scale
        unwrap(self.trainer.model).update_teacher()

    def after_epoch(self):
        if comm.get_world_size() > 1:
            for buffer in unwrap(self.trainer.model).buffers():
                dist.broadcast(buffer, src=0)


class PseudoLabelHook(HookBase):
    """Every ``every`` epochs, before the epoch: teacher features of the whole target train set,
    clustering and SLR refinement (rank 0), labels broadcast, then the trainer swaps in the new
    training set, resized classifiers and a fresh optimiser.

    Its ``state_dict`` (the refiner's previous labels, this epoch's labels) is saved with every
    checkpoint, so ``--resume`` continues the refinement instead of restarting it. The epoch's
    statistics go to the event storage and ``epoch_stats`` (for ``EpochRecordHook``).
    """

    def __init__(self, labeler: Labeler, num_items: int, every: int = 1, min_clusters: int = 2,
                 true_ids: Optional[Sequence] = None):
        """``min_clusters``: fewer clusters cannot fill a PK batch (fast-reid's identity sampler
        would loop forever), so such an epoch counts as a degenerate clustering."""
        self.labeler = labeler
        self.num_items = num_items
        self.every = every
        self.min_clusters = max(2, min_clusters)
        self.true_ids = None if true_ids is None else np.asarray(true_ids)
        self.labels: Optional[np.ndarray] = None  # the labels trained on now (for resume)
        self.epoch_stats: Optional[dict] = None  # this epoch's, when it clustered (rank 0)

    trainer: AdaptationTrainer

    def before_epoch(self):
        epoch = self.trainer.epoch
        self.epoch_stats = None
        if epoch % self.every == 0 or self.labels is None:
            self._relabel(epoch)
        elif self.trainer.train_labels_missing():
            # Resumed between two clusterings: retrain on the labels the checkpoint holds.
            self.trainer.set_train_labels(self.labels, soft_labels=None, centroids=None)

    def _relabel(self, epoch: int):
        trainer = self.trainer
        features = trainer.extract_target_features()
        source = trainer.extract_source_features() if self.labeler.needs_source_features else None
        result = None
        if comm.is_main_process():
            state_before = self.labeler.state_dict()
            result = self.labeler(features, source)
            labels, soft_labels, stats = result.labels, result.soft_labels, result.stats
            if stats["clusters_after"] < self.min_clusters:
                labels, stats = self._degenerate(epoch, stats)
                soft_labels = None
                self.labeler.load_state_dict(state_before)  # never project from a degenerate epoch
            result = (labels, soft_labels, stats, self.labeler.state_dict())
        labels, soft_labels, stats, labeler_state = _broadcast_from_main(result)
        if not comm.is_main_process():  # the refiner stepped on rank 0 only: same state everywhere
            self.labeler.load_state_dict(labeler_state)

        kept = labels >= 0
        num_classes = int(labels.max()) + 1
        centroids = np.zeros((num_classes, features.shape[1]), dtype=np.float64)
        np.add.at(centroids, labels[kept], features[kept])
        centroids /= np.bincount(labels[kept], minlength=num_classes)[:, None]
        trainer.set_train_labels(labels, soft_labels=soft_labels,
                                 centroids=torch.as_tensor(centroids, dtype=torch.float32))
        self.labels = labels
        self._log(epoch, labels, stats)

    def _degenerate(self, epoch: int, stats: dict):
        """Too few clusters: keep training on the last labels, or stop with advice."""
        advice = (f"epoch {epoch}: {stats['clusters_after']} clusters to train on, fewer than the "
                  f"{self.min_clusters} a batch needs; {self.labeler.advice(stats, self.num_items)}")
        if self.labels is None:
            raise RuntimeError(f"No usable pseudo-labels at {advice}")
        logger.warning(f"Keeping the previous epoch's pseudo-labels: {advice}")
        return self.labels, dict(stats, clusters_after=int(self.labels.max()) + 1)

    def _log(self, epoch: int, labels: np.ndarray, stats: dict):
        if not comm.is_main_process():
            return
        scalars = {f"pseudo/{k}": float(v) for k, v in stats.items() if np.isfinite(v)}
        if self.true_ids is not None:
            quality = label_quality(labels, self.true_ids)
            scalars.update({f"pseudo/{k}": float(v) for k, v in quality.items() if np.isfinite(v)})
            logger.info(f"Epoch {epoch} pseudo-label quality vs true identities: "
                        + ", ".join(f"{k} {v:.3f}" for k, v in quality.items()))
        self.trainer.storage.put_scalars(**scalars, smoothing_hint=False)
        self.epoch_stats = {k[len("pseudo/"):]: v for k, v in scalars.items()}

    def state_dict(self) -> dict:
        """Lists and ints only, so checkpoints load with ``weights_only=True``."""
        return {"labeler": self.labeler.state_dict(),
                "labels": None if self.labels is None else self.labels.tolist()}

    def load_state_dict(self, state: dict):
        self.labeler.load_state_dict(state["labeler"])
        self.labels = None if state["labels"] is None else np.asarray(state["labels"], dtype=np.int64)


class EpochRecordHook(HookBase):
    """Each epoch's line of ``slr_epochs.jsonl`` (``records.py``), after fast-reid's EvalHook: the
    pseudo-label statistics, the evaluation, and where the epoch's time went, part by part; at the
    end of training the best evaluated epoch (labelled: chosen with the target's labels) and the
    run's time shares in the log. Every rank times its steps; rank 0 (``path``) writes."""

    def __init__(self, pseudo_label_hook: PseudoLabelHook, path: Optional[str]):
        self.pseudo_label_hook, self.path = pseudo_label_hook, path
        self._evaluated = None
        self._train_start = self._train_end = None

    trainer: AdaptationTrainer

    def before_train(self):
        self.trainer.epoch_seconds.clear()

    def before_step(self):
        if self._train_start is None:
            self._train_start = time.perf_counter()

    def after_step(self):
        self._train_end = time.perf_counter()

    def after_epoch(self):
        trainer, stats = self.trainer, self.pseudo_label_hook.epoch_stats
        seconds = dict(trainer.epoch_seconds)
        if self._train_start is not None:
            seconds["train"] = self._train_end - self._train_start
        if stats:
            seconds.update({part: stats[f"seconds_{part}"] for part in ("search", "jaccard", "source_term", "cluster")
                            if f"seconds_{part}" in stats})
            seconds["refine"] = sum(stats.get(f"seconds_{part}", 0.0) for part in ("projection", "soft_labels", "harden"))
        record = {"epoch": trainer.epoch, "seconds": seconds}
        if stats:
            record["pseudo_labels"] = stats
        record.update(self._new_evaluation())
        if self.path:
            append_record(self.path, record)
            logger.info(f"Epoch {trainer.epoch} seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
        trainer.epoch_seconds.clear()
        self._train_start = self._train_end = None

    def _new_evaluation(self) -> dict:
        results = self.trainer.last_evaluation()
        if not results or results is self._evaluated:
            return {}
        self._evaluated = results
        return {"eval": numeric_results(results)}

    def after_train(self):
        """The evaluation fast-reid's EvalHook runs here (a last epoch off its period), then the
        best evaluated epoch of the record, labelled: choosing it takes the target's labels, so it
        is optimistic; the reported figure (final_results.json) stays the last epoch's. Not after a
        failed training (fast-reid calls after_train then too)."""
        finished = self.trainer.epoch + 1 >= self.trainer.max_epoch
        evaluation = self._new_evaluation()
        if not self.path or not finished:
            return
        if evaluation:
            append_record(self.path, {"epoch": self.trainer.epoch, **evaluation})
        record = RunRecord.read(self.path)
        best = record.best_of_evaluations()
        if best:
            logger.info(f"Best evaluated epoch, chosen with the target's labels (optimistic; the reported "
                        f"figure is the last epoch's): epoch {best['epoch']}, mAP {best['mAP']:.2f}")
            append_record(self.path, {BEST_BY_TARGET_LABELS: best})
        shares = record.time_shares()
        total = sum(shares.values())
        if total > 0:
            logger.info(f"Where the {len(record.seconds())} epochs' {total:.0f}s went: "
                        + ", ".join(f"{part} {seconds:.0f}s ({seconds / total:.0%})" for part, seconds in shares.items()))
