"""tools/train_net.py with one part of stage 2 broken on purpose: controls that must not beat AdaBN.

    python experiments/sabotaged_run.py --sabotage shuffled-labels|frozen-teacher <train_net arguments>

- ``shuffled-labels``: every epoch's pseudo-labels are permuted among the kept images (the same
  cluster sizes, members drawn at random): training on labels that carry no identity;
- ``frozen-teacher``: the teacher never takes an EMA step, so the evaluated model keeps the
  source weights (its BN statistics still follow its own forwards, as in a normal run).

If either ended above AdaBN, the gain of a real run could not be credited to its pseudo-labels
or to its teacher's learning (experiments/shape_sweep.py runs both).
"""
import sys

import numpy as np

import fastreid_slr  # noqa: F401  (applies the compat patches, registers the plugin)
from fastreid_slr import run
from fastreid_slr.engine import SLRTrainer, TeacherEMAHook
from fastreid_slr.engine.pseudo_labels import PseudoLabels, WrappedLabeler
from procedural_reid import add_procedural_config, apply_procedural_config


class ShuffledLabeler(WrappedLabeler):
    """A labeler's labels, permuted among the kept images with a seeded generator."""

    def __init__(self, labeler, seed: int):
        super().__init__(labeler)
        self.rng = np.random.default_rng(seed)

    def __call__(self, features, source_features=None) -> PseudoLabels:
        result = self.labeler(features, source_features)
        labels = result.labels.copy()
        kept = np.flatnonzero(labels >= 0)
        labels[kept] = labels[self.rng.permutation(kept)]
        return PseudoLabels(labels=labels, soft_labels=None, stats=result.stats)


class ShuffledLabelsTrainer(SLRTrainer):
    @classmethod
    def build_labeler(cls, cfg, true_ids, cameras):
        return ShuffledLabeler(super().build_labeler(cfg, true_ids, cameras), seed=max(cfg.SEED, 0))


class FrozenTeacherTrainer(SLRTrainer):
    def build_hooks(self):
        return [h for h in super().build_hooks() if not isinstance(h, TeacherEMAHook)]


SABOTAGES = {"shuffled-labels": ShuffledLabelsTrainer, "frozen-teacher": FrozenTeacherTrainer}


def main(argv):
    if len(argv) < 2 or argv[0] != "--sabotage" or argv[1] not in SABOTAGES:
        sys.exit(f"usage: {sys.argv[0]} --sabotage {{{'|'.join(SABOTAGES)}}} <tools/train_net.py arguments>")
    run.launch_main(run.argument_parser().parse_args(argv[2:]), trainer_cls=SABOTAGES[argv[1]],
                    extensions=(run.ConfigExtension(add_procedural_config, apply_procedural_config),))


if __name__ == "__main__":
    main(sys.argv[1:])
