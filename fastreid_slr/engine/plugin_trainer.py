"""What both of the plugin's trainers add to fast-reid's ``DefaultTrainer``.

- ``SLRCheckpointer`` instead of fast-reid's checkpointer (atomic saves, safe loading, classifiers
  sized from the checkpoint), the ``SLR.CHECKPOINT.KEEP_LAST`` newest per-epoch checkpoints kept,
  and a ``--resume`` that falls back past a checkpoint that does not load;
- evaluation loaders with ``DATALOADER.NUM_WORKERS`` workers (fast-reid hard-codes 4, docs/performance.md
  "CPU runs"), whose unreadable images name their file;
- a non-finite loss names the epoch as well as the iteration;
- fast-reid's parts where they fail the plugin (``fastreid_subclasses``): ``SOLVER.AMP`` on any device,
  the Python evaluator when Cython's is not compiled, one metric line per iteration.
"""
import logging
from collections import OrderedDict

from fastreid.data import build_reid_test_loader
from fastreid.data.transforms import build_transforms
from fastreid.engine import DefaultTrainer
from fastreid.engine import hooks as fastreid_hooks
from fastreid.evaluation import inference_on_dataset, print_csv_format
from fastreid.utils import comm
from fastreid.utils.events import CommonMetricPrinter

from ..data.common import NamedFileDataset
from ..data.paths import build_dataset
from .checkpointer import KeepLastCheckpoints, SLRCheckpointer, resume_newest_readable
from .fastreid_subclasses import DeviceAMPTrainer, OncePerIterationPrinter, PluginEvaluator

logger = logging.getLogger(__name__)


class PluginTrainer(DefaultTrainer):
    """fast-reid's DefaultTrainer with the plugin's checkpointing, evaluation, AMP and errors."""

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.SOLVER.AMP.ENABLED:
            self._trainer = DeviceAMPTrainer.replacing(self._trainer)
        self.checkpointer = SLRCheckpointer.replacing(self.checkpointer)
        for hook in self._hooks:  # the hook that saves every epoch must save through it
            if isinstance(hook, fastreid_hooks.PeriodicCheckpointer):
                hook.checkpointer = self.checkpointer

    def build_hooks(self):
        hooks = super().build_hooks()
        saving = [i for i, h in enumerate(hooks) if isinstance(h, fastreid_hooks.PeriodicCheckpointer)]
        if saving:  # rank 0 only, as the checkpointer
            hooks.insert(saving[0] + 1, KeepLastCheckpoints(self.cfg.OUTPUT_DIR, self.cfg.SLR.CHECKPOINT.KEEP_LAST))
        return hooks

    def build_writers(self):
        return [OncePerIterationPrinter(self.max_iter) if type(w) is CommonMetricPrinter else w
                for w in super().build_writers()]

    def resume_or_load(self, resume=True):
        if resume and self.checkpointer.has_checkpoint():
            self.start_epoch = resume_newest_readable(self.checkpointer, self.max_epoch)
        else:
            super().resume_or_load(resume=resume)

    def run_step(self):
        try:
            super().run_step()
        except FloatingPointError as exc:
            raise FloatingPointError(
                f"Loss became infinite or NaN at epoch {self.epoch}, iteration {self.iter} ({exc}). Lower "
                f"SOLVER.BASE_LR, or check the data and the weights loaded; --resume restarts from the last "
                f"checkpoint.") from exc

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """(loader over query + gallery, number of queries), as fast-reid's, with the configured
        workers and images that name their file when they cannot be read."""
        data = build_dataset(dataset_name)
        test_set = NamedFileDataset(data.query + data.gallery, build_transforms(cfg, is_train=False), relabel=False)
        return build_reid_test_loader(test_set=test_set, test_batch_size=cfg.TEST.IMS_PER_BATCH,
                                      num_query=len(data.query), num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_dir=None):
        data_loader, num_query = cls.build_test_loader(cfg, dataset_name)
        return data_loader, PluginEvaluator(cfg, num_query, output_dir)

    @classmethod
    def test(cls, cfg, model, image_cache=None):
        """fast-reid's evaluation on every DATASETS.TESTS set; with an ``ImageCache``
        (``data.image_cache``), a set it keeps is read from it (planned as ``"test <name>"``)."""
        results = OrderedDict()
        for name in cfg.DATASETS.TESTS:
            if image_cache is None:
                data_loader, evaluator = cls.build_evaluator(cfg, name)
            else:
                data = build_dataset(name)
                data_loader = image_cache.batches(f"test {name}", data.query + data.gallery)
                evaluator = PluginEvaluator(cfg, len(data.query))
            results[name] = inference_on_dataset(model, data_loader, evaluator, flip_test=cfg.TEST.FLIP.ENABLED)
            if comm.is_main_process():
                logger.info(f"Evaluation results for {name} in csv format:")
                results[name]["dataset"] = name
                print_csv_format(results[name])
        return results[cfg.DATASETS.TESTS[0]] if len(results) == 1 else results
