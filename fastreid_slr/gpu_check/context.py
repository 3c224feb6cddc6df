"""What every part of the check shares: its config for the mode (full on CUDA, tiny on a CPU), its
device and step counts, and what one part leaves for the next (stage 1's weights, the stage-2
trainer, the results so far)."""
import argparse
import contextlib
import gc
import glob
import os
import shutil
from typing import Optional, Sequence

import torch

from .. import run

# The clustering's scale in the paper's d2m task: Market-1501's training images (the target) and
# DukeMTMC's (the source term's).
MARKET_TRAIN_IMAGES = 12936
DUKE_TRAIN_IMAGES = 16522

# The procedural data instead of Market and Duke, and no ImageNet files to download.
PROCEDURAL_DATA = {"DATASETS.NAMES": '("ProceduralB",)', "DATASETS.TESTS": '("ProceduralB",)',
                   "SLR.SOURCE.DATASETS": '("ProceduralA",)', "MODEL.BACKBONE.PRETRAIN": "False"}
# Short runs on it: the cluster settings small data needs (~20 images per identity, as the demo),
# stage-1 epochs of one pass over the small source; model, input size, batch and optimiser stay the
# config's.
SHORT_RUNS = {
    "DATASETS.PROCEDURAL.IMAGES_PER_CAMERA": "6", "SLR.CLUSTER.K1": "15", "SLR.CLUSTER.K2": "4",
    # ABMT's per-epoch eps follows the features' scale, whatever two short epochs leave: the
    # smallest 1 % of the pairs (~3 % are same-identity pairs here)
    "SLR.CLUSTER.RHO": "0.01", "SLR.SOURCE.WARMUP_EPOCHS": "0", "SLR.SOURCE.STEPS": "[100]",
    "SLR.CHECKPOINT.KEEP_LAST": "1",
    "SLR.SOURCE.ITERS_PER_EPOCH": "0",  # stage-1 epochs of one pass over the small source, not ABMT's 200 steps
}
LOADER_WORKERS = min(8, os.cpu_count() or 1)
# Short epochs of the full-size network (on CUDA).
FULL_OPTS = {"SLR.SOURCE.MAX_EPOCH": "2", "SOLVER.MAX_EPOCH": "2", "SLR.ITERS_PER_EPOCH": "20",
             "TEST.EVAL_PERIOD": "2", "DATALOADER.NUM_WORKERS": str(LOADER_WORKERS)}
# The tiny CPU mode, after the tiny overlay: a dual ResNet-18 on the CPU, and the check's own
# epochs (fewer than the tests' tiny run: the check times parts, it does not need good clusters).
TINY_OPTS = {"MODEL.DEVICE": "cpu", "MODEL.BACKBONE.DEPTH": "18x", "MODEL.BACKBONE.FEAT_DIM": "512",
             "TEST.IMS_PER_BATCH": "64", "SLR.SOURCE.MAX_EPOCH": "3", "SOLVER.MAX_EPOCH": "2",
             "TEST.EVAL_PERIOD": "2"}
# Iterations of each timed part: (warm-up, timed); the AMP epoch's (bfloat16 on a CPU without
# bfloat16 units is far slower than float32: docs/performance.md, "CPU runs").
FULL_STEPS = {"step_time": (5, 50), "features": (2, 10), "repeat": 10, "amp": 20}
TINY_STEPS = {"step_time": (1, 3), "features": (1, 2), "repeat": 2, "amp": 1}
# The training folders under the check's output, renewed on every check (records are appended to).
RUNS = ("source", "slr", "amp", "epoch", "ddp")


def opts_list(opts: dict) -> list:
    """``{"A.B": "v"}`` as command-line opts: ``["A.B", "v"]``."""
    return [x for item in opts.items() for x in item]


class Context:
    """The check's config and shared state, handed to every part's ``run``.

    ``config_file``: the paper config (configs/SLR/d2m.yml); ``tiny_overlay``: the tiny run's
    overlay (configs/Demo/tiny.yml), merged after it in the tiny mode; ``extensions``: the config
    keys and set-up of the data (``fastreid_slr.run.ConfigExtension``); ``ddp``: auto / on / off;
    ``rank_command``: the command line that runs ``ranks.launch_recorded`` (the ddp part appends
    tools/train_net.py's flags).
    """

    def __init__(self, full: bool, output: str, config_file: str, tiny_overlay: str,
                 extensions: Sequence[run.ConfigExtension] = (), ddp: str = "auto", rank_command: Sequence[str] = ()):
        self.full, self.output, self.ddp_mode = full, output, ddp
        self.config_file, self.tiny_overlay, self.extensions = config_file, tiny_overlay, tuple(extensions)
        self.rank_command = list(rank_command)
        self.cfg = self._check_config()
        self.device = torch.device(self.cfg.MODEL.DEVICE)
        self.steps = FULL_STEPS if full else TINY_STEPS
        self.source_weights: Optional[str] = None  # stage 1's weights (the pipeline part)
        self.trainer = None  # the pipeline part's stage-2 trainer, trained
        self.results: dict = {}  # each part's result so far, by name

    def load_config(self, opts: dict):
        """The config tools/train_net.py builds for the config file and ``opts``."""
        return run.load_config(argparse.Namespace(config_file=self.config_file, opts=opts_list(opts)), self.extensions)

    def _check_config(self):
        """The config file on the procedural data with short runs: the full-size network (full), or
        the tiny overlay and a ResNet-18 (tiny); writing under the check's output."""
        folders = {"OUTPUT_DIR": os.path.join(self.output, "slr"),
                   "SLR.SOURCE.OUTPUT_DIR": os.path.join(self.output, "source")}
        cfg = self.load_config({**PROCEDURAL_DATA, **SHORT_RUNS, **(FULL_OPTS if self.full else {}), **folders})
        if not self.full:
            cfg.merge_from_file(self.tiny_overlay)
            cfg.merge_from_list(opts_list(TINY_OPTS))
        return cfg

    def stage1_weights(self) -> str:
        if self.source_weights is None:
            raise RuntimeError("needs the pipeline part's source weights")
        return self.source_weights

    def stage2_config(self, cfg, folder: str):
        """A clone of ``cfg`` that adapts from stage 1's weights (the pipeline part's), writing into
        ``<output>/<folder>``."""
        cfg = cfg.clone()
        cfg.MODEL.WEIGHTS = self.stage1_weights()
        cfg.OUTPUT_DIR = os.path.join(self.output, folder)
        return cfg

    def apply_datasets(self, cfg) -> None:
        """The extensions' set-up for ``cfg`` (the datasets it describes), as tools/train_net.py's."""
        for extension in self.extensions:
            extension.apply(cfg)

    @contextlib.contextmanager
    def datasets_of(self, cfg):
        """Datasets built within follow ``cfg``; the check's own afterwards."""
        self.apply_datasets(cfg)
        try:
            yield
        finally:
            self.apply_datasets(self.cfg)

    def free_gpu_memory(self) -> None:
        """Drop the pipeline's trainer and hand its cached GPU memory back (for other processes)."""
        self.trainer = None
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()


def clear_runs(output: str) -> None:
    """Remove a previous check's training folders, whose records would be appended to."""
    for folder in RUNS:
        shutil.rmtree(os.path.join(output, folder), ignore_errors=True)


def remove_checkpoints(output: str) -> None:
    """The runs' checkpoints (GBs in the full mode)."""
    for checkpoint in glob.glob(os.path.join(glob.escape(output), "*", "*.pth")):
        os.remove(checkpoint)
