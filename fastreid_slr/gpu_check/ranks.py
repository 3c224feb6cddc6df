"""A stage-2 trainer that records what its rank trained on, so that a DDP run can be checked for
ranks that agree (tests/integration/test_ddp.py on two gloo ranks, the check's ddp part on two GPUs)."""
import json
import os
from typing import Sequence

import numpy as np
import torch.distributed as dist
from fastreid.utils import comm

from .. import run
from ..engine import SLRTrainer
from ..utils import unwrap
from .measuring import digest


class RankRecordingTrainer(SLRTrainer):
    """``SLRTrainer`` that records each clustering's labels, classifier count and training set, and
    after training writes this rank's record to ``OUTPUT_DIR/rank<r>.json`` (``rank_record``).
    Module-level, so that ``launch_main`` hands it to spawned ranks."""

    def __init__(self, cfg):
        self.epochs = []
        super().__init__(cfg)

    def set_train_labels(self, labels, soft_labels=None, centroids=None):
        super().set_train_labels(labels, soft_labels, centroids)
        dataset = self._trainer.data_loader.dataset
        self.epochs.append({
            "labels": np.asarray(labels).tolist(), "num_classes": int(unwrap(self.model).num_classes),
            "train_set": [[path, int(pid)] for path, pid, _ in dataset.img_items]})

    def train(self):
        results = super().train()
        with open(os.path.join(self.cfg.OUTPUT_DIR, f"rank{comm.get_rank()}.json"), "w") as f:
            json.dump(self.rank_record(), f)
        return results

    def rank_record(self) -> dict:
        """What this rank trained on and holds after training: the process group, each clustering
        (``epochs``), the last labels and classifier count, the refiner's state, its shard of each
        decoded image set, and digests of the weights and the floating-point buffers."""
        model, hook = unwrap(self.model), self.pseudo_label_hook
        return {"rank": comm.get_rank(), "world_size": comm.get_world_size(),
                "backend": dist.get_backend() if dist.is_initialized() else None, "device": str(model.device),
                "epochs": self.epochs, "labels": hook.labels.tolist(), "num_classes": int(model.num_classes),
                "refiner": hook.labeler.state_dict(),
                "cached": {name: [d.shard.start, d.shard.stop, int(d.images.shape[0])]
                           for name, d in self.image_cache.decoded.items() if d is not None},
                "target_images": len(self.target_items),
                "parameters": digest(model.named_parameters()),
                "buffers": digest((n, b) for n, b in model.named_buffers() if b.is_floating_point())}


def launch_recorded(argv: Sequence[str], extensions: Sequence[run.ConfigExtension] = ()):
    """tools/train_net.py's run of the command line ``argv`` (``fastreid_slr.run.launch_main``),
    with ``RankRecordingTrainer``."""
    run.launch_main(run.argument_parser().parse_args(list(argv)), trainer_cls=RankRecordingTrainer,
                    extensions=extensions)
