"""Checkpoints on a finite disk: keep the newest few, and resume past one that does not load.

Both stages checkpoint every epoch and fast-reid keeps every file (about 0.7 GB each for the
ResNet-50 pair with its Adam state). ``CheckpointRetention`` is a mixin for a DefaultTrainer
subclass: after each save it keeps the ``SLR.CHECKPOINT.KEEP_LAST`` newest ``model_<epoch>.pth``
(``model_final.pth`` and ``model_best.pth`` always stay), and ``--resume`` falls back to the
newest checkpoint that loads when the last one does not (a copy or a full disk truncated it).
"""
import logging
import os
import re
from typing import List, Optional

from fastreid.engine.train_loop import HookBase

from ..compat import UnreadableCheckpoint

logger = logging.getLogger(__name__)

_EPOCH_FILE = re.compile(r"model_(\d+)\.pth")


def epoch_checkpoints(folder: str) -> List[str]:
    """``model_<epoch>.pth`` files in ``folder``, newest epoch first."""
    names = [n for n in os.listdir(folder) if _EPOCH_FILE.fullmatch(n)] if os.path.isdir(folder) else []
    return sorted(names, key=lambda n: -int(_EPOCH_FILE.fullmatch(n).group(1)))


def _epoch_of(name: str, max_epoch: int) -> Optional[int]:
    """The epoch a checkpoint's file name promises (model_best's is not in its name)."""
    match = _EPOCH_FILE.fullmatch(name)
    return int(match.group(1)) if match else max_epoch - 1 if name == "model_final.pth" else None


class KeepLastCheckpoints(HookBase):
    """After each epoch's save (place it after fast-reid's PeriodicCheckpointer), delete all but the
    ``keep_last`` newest per-epoch checkpoints up to this epoch. Files of later epochs, left by a
    run that resumed from an earlier checkpoint, are stale and go too."""

    def __init__(self, folder: str, keep_last: int):
        if keep_last < 0:
            raise ValueError(f"SLR.CHECKPOINT.KEEP_LAST must be >= 0 (0 keeps every checkpoint), got {keep_last}")
        self.folder, self.keep_last = folder, keep_last

    def after_epoch(self):
        if not self.keep_last:
            return
        epoch = self.trainer.epoch
        kept = 0
        for name in epoch_checkpoints(self.folder):
            if int(_EPOCH_FILE.fullmatch(name).group(1)) <= epoch and kept < self.keep_last:
                kept += 1
                continue
            try:
                os.remove(os.path.join(self.folder, name))
            except FileNotFoundError:
                pass


class CheckpointRetention:
    """Mixin for a fast-reid DefaultTrainer subclass (list it first): pruned checkpoints, and a
    resume that survives an unreadable last checkpoint."""

    def build_hooks(self):
        hooks = super().build_hooks()
        at = next((i for i, h in enumerate(hooks) if type(h).__name__ == "PeriodicCheckpointer"), None)
        if at is not None:  # rank 0 only, as the checkpointer
            hooks.insert(at + 1, KeepLastCheckpoints(self.cfg.OUTPUT_DIR, self.cfg.SLR.CHECKPOINT.KEEP_LAST))
        return hooks

    def resume_or_load(self, resume=True):
        """fast-reid's, but a last checkpoint that does not load is named and the newest one that
        does is used instead, saying how many epochs that costs."""
        checkpointer = self.checkpointer
        if not (resume and checkpointer.has_checkpoint()):
            return super().resume_or_load(resume=resume)
        folder = checkpointer.save_dir
        tagged = os.path.basename(checkpointer.get_checkpoint_file())
        candidates = [tagged] + [n for n in epoch_checkpoints(folder) if n != tagged]
        failures = []
        for name in candidates:
            path = os.path.join(folder, name)
            try:
                if not os.path.isfile(path):
                    raise UnreadableCheckpoint(f"Checkpoint {path} does not exist")
                checkpoint = checkpointer.load(path)
            except UnreadableCheckpoint as exc:
                logger.warning(f"{exc}; trying an older checkpoint")
                failures.append(name)
                continue
            self.start_epoch = checkpoint.get("epoch", -1) + 1
            if failures:
                self._report_fallback(failures[0], name)
            return
        raise UnreadableCheckpoint(f"--resume: no checkpoint in {folder} loads (tried {', '.join(candidates)}); "
                                   f"delete them, or run without --resume to start again")

    def _report_fallback(self, wanted: str, used: str):
        wanted_epoch = _epoch_of(wanted, self.max_epoch)
        cost = (f"{wanted_epoch + 1 - self.start_epoch} epoch(s) to train again" if wanted_epoch is not None
                else "the epochs after it to train again")
        logger.warning(f"Resuming from {used} (epoch {self.start_epoch - 1}) instead of {wanted}, which does not "
                       f"load: {cost}")
