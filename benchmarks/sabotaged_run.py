"""tools/train_net.py with one part of stage 2 broken on purpose: controls that must not beat AdaBN.

    python benchmarks/sabotaged_run.py --sabotage shuffled-labels|frozen-teacher <train_net arguments>

- ``shuffled-labels``: every epoch's pseudo-labels are permuted among the kept images (the same
  cluster sizes, members drawn at random): training on labels that carry no identity;
- ``frozen-teacher``: the teacher never takes an EMA step, so the evaluated model keeps the
  source weights (its BN statistics still follow its own forwards, as in a normal run).

If either ended above AdaBN, the gain of a real run could not be credited to its pseudo-labels
or to its teacher's learning (benchmarks/shape_sweep.py runs both).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import train_net  # noqa: E402  (applies the compat patches, registers the plugin)

from fastreid_slr.engine import SLRTrainer, TeacherEMAHook  # noqa: E402
from fastreid_slr.engine.pseudo_labels import PseudoLabels  # noqa: E402

SABOTAGES = ("shuffled-labels", "frozen-teacher")


class ShuffledLabeler:
    """Wraps a labeler: its labels, permuted among the kept images with a seeded generator."""

    def __init__(self, labeler, seed: int):
        self.labeler, self.rng = labeler, np.random.default_rng(seed)
        self.needs_source_features = labeler.needs_source_features
        self.radius_key = labeler.radius_key

    def __call__(self, features, source_features=None) -> PseudoLabels:
        result = self.labeler(features, source_features)
        labels = result.labels.copy()
        kept = np.flatnonzero(labels >= 0)
        labels[kept] = labels[self.rng.permutation(kept)]
        return PseudoLabels(labels=labels, soft_labels=None, stats=result.stats)

    def state_dict(self):
        return self.labeler.state_dict()

    def load_state_dict(self, state):
        self.labeler.load_state_dict(state)


def sabotaged_trainer(sabotage: str):
    class SabotagedSLRTrainer(SLRTrainer):
        def build_hooks(self):
            hooks = super().build_hooks()
            if sabotage == "shuffled-labels":
                hook = self.pseudo_label_hook
                hook.labeler = ShuffledLabeler(hook.labeler, seed=max(self.cfg.SEED, 0))
            else:
                hooks = [h for h in hooks if not isinstance(h, TeacherEMAHook)]
            return hooks

    return SabotagedSLRTrainer


def main(argv):
    if len(argv) < 2 or argv[0] != "--sabotage" or argv[1] not in SABOTAGES:
        sys.exit(f"usage: {sys.argv[0]} --sabotage {{{'|'.join(SABOTAGES)}}} <tools/train_net.py arguments>")
    train_net.SLRTrainer = sabotaged_trainer(argv[1])
    args = train_net.argument_parser().parse_args(argv[2:])
    train_net.launch(train_net.main, args.num_gpus, num_machines=args.num_machines,
                     machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    main(sys.argv[1:])
