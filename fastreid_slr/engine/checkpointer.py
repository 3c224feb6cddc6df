"""The plugin's checkpointer, and checkpoints on a finite disk.

``SLRCheckpointer`` is fast-reid's ``Checkpointer`` with four changes the plugin relies on:

- saves (and the ``last_checkpoint`` tag) are written to a temporary file and renamed, so a run
  killed mid-save leaves the previous checkpoint intact, never a truncated one;
- files load with ``torch.load(weights_only=True)`` whatever torch's default (a checkpoint cannot
  run code), and a file that does not load raises ``UnreadableCheckpoint`` naming it;
- a model that sizes its classifiers per epoch (``resize_classifiers_to``, SLR's) is sized from
  the checkpoint before fast-reid compares shapes, which would otherwise drop the classifiers;
- checkpoints of releases that saved a classifier as ``weight_k<K>`` still load.

Both stages checkpoint every epoch and fast-reid keeps every file (about 0.7 GB each for the
ResNet-50 pair with its Adam state): ``KeepLastCheckpoints`` keeps the ``SLR.CHECKPOINT.KEEP_LAST``
newest ``model_<epoch>.pth`` (``model_final.pth`` and ``model_best.pth`` always stay), and
``resume_newest_readable`` lets ``--resume`` fall back past a checkpoint that does not load.
"""
import glob
import logging
import os
import re
from typing import List, Optional

import torch
from fastreid.engine.train_loop import HookBase
from fastreid.utils.checkpoint import Checkpointer

from ..utils import atomic_write, unwrap

logger = logging.getLogger(__name__)

_EPOCH_FILE = re.compile(r"model_(\d+)\.pth")
_LEGACY_CLASSIFIER_KEY = re.compile(r"(.*\.classifier)\.weight_k\d+")


class UnreadableCheckpoint(RuntimeError):
    """A checkpoint file that torch cannot load (truncated, not a checkpoint, or refused as unsafe)."""


class SLRCheckpointer(Checkpointer):
    """fast-reid's Checkpointer, atomic, safe, and sized from the checkpoint (module docstring)."""

    @classmethod
    def replacing(cls, checkpointer: Checkpointer) -> "SLRCheckpointer":
        """The same model, folder, rank role and checkpointables as fast-reid's ``checkpointer``."""
        return cls(checkpointer.model, checkpointer.save_dir, save_to_disk=checkpointer.save_to_disk,
                   **checkpointer.checkpointables)

    def save(self, name: str, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict(), **{k: obj.state_dict() for k, obj in self.checkpointables.items()}}
        data.update(kwargs)
        path = os.path.join(self.save_dir, f"{name}.pth")
        self.logger.info(f"Saving checkpoint to {path}")
        atomic_write(path, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(os.path.basename(path))
        for stale in glob.glob(os.path.join(glob.escape(self.save_dir), ".*.pth.tmp")):  # left by a killed save
            try:
                os.remove(stale)
            except OSError:
                pass

    def tag_last_checkpoint(self, last_filename_basename: str):
        atomic_write(os.path.join(self.save_dir, "last_checkpoint"), lambda f: f.write(last_filename_basename), mode="w")

    def _load_file(self, f: str):
        try:
            return torch.load(f, map_location=torch.device("cpu"), weights_only=True)
        except Exception as exc:  # noqa: BLE001 - whatever torch raises, the file is what the user needs
            raise UnreadableCheckpoint(f"Cannot load checkpoint {f}: {type(exc).__name__}: {str(exc)[:300]}") from exc

    def _load_model(self, checkpoint):
        state = {_LEGACY_CLASSIFIER_KEY.sub(r"\1.weight", k): v for k, v in checkpoint["model"].items()}
        checkpoint["model"] = state
        model = unwrap(self.model)
        if hasattr(model, "resize_classifiers_to"):
            model.resize_classifiers_to(state)
        return super()._load_model(checkpoint)


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
        kept = 0
        for name in epoch_checkpoints(self.folder):
            if int(_EPOCH_FILE.fullmatch(name).group(1)) <= self.trainer.epoch and kept < self.keep_last:
                kept += 1
                continue
            try:
                os.remove(os.path.join(self.folder, name))
            except FileNotFoundError:
                pass


def resume_newest_readable(checkpointer: Checkpointer, max_epoch: int) -> int:
    """fast-reid's resume, except that a last checkpoint that does not load is named and the newest
    one that does is used instead, saying how many epochs that costs. Returns the epoch to start."""
    folder = checkpointer.save_dir
    tagged = os.path.basename(checkpointer.get_checkpoint_file())
    candidates = [tagged] + [n for n in epoch_checkpoints(folder) if n != tagged]
    for name in candidates:
        path = os.path.join(folder, name)
        try:
            if not os.path.isfile(path):
                raise UnreadableCheckpoint(f"Checkpoint {path} does not exist")
            start_epoch = checkpointer.load(path).get("epoch", -1) + 1
        except UnreadableCheckpoint as exc:
            logger.warning(f"{exc}; trying an older checkpoint")
            continue
        if name != tagged:
            wanted = _epoch_of(tagged, max_epoch)
            cost = (f"{wanted + 1 - start_epoch} epoch(s) to train again" if wanted is not None
                    else "the epochs after it to train again")
            logger.warning(f"Resuming from {name} (epoch {start_epoch - 1}) instead of {tagged}, which does not "
                           f"load: {cost}")
        return start_epoch
    raise UnreadableCheckpoint(f"--resume: no checkpoint in {folder} loads (tried {', '.join(candidates)}); "
                               f"delete them, or run without --resume to start again")
