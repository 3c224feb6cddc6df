#!/usr/bin/env python
"""`make gpu-check`: does this machine run the paper's SLR, and how fast? One call, no downloads.

With CUDA it takes configs/SLR/d2m.yml's model as the paper trains it (dual ResNet-50, 256x128,
batch 16, ImageNet weights off: ``PRETRAIN False``) onto the procedural data, with short epochs:

- pipeline: stage 1 (source pretraining) and two stage-2 epochs (clustering, refinement,
  classifier resizing, teacher evaluation);
- step time: SLR training steps against fast-reid's ``Baseline`` with the same backbone depth,
  input and batch, in the same process; also with the cuDNN settings ``SEED`` turns on;
- teacher features: images/s of the feature extraction that precedes every clustering;
- pseudo-labels: the clustering step at Market scale and the teacher's 4096-d, its exact search
  with torch on the GPU (and faiss-gpu when installed) against the CPU's (identical labels);
- AMP: one stage-2 epoch with ``SOLVER.AMP.ENABLED True``;
- repeatability: two seeded runs of the same steps, compared bit for bit;
- DDP: with two or more GPUs, ``tools/train_net.py``'s main through ``--num-gpus 2`` (NCCL); every
  rank must end with the same labels.

Peak GPU memory is reported per part. Without CUDA the same parts run in a tiny CPU mode (dual
ResNet-18, 32x16, a few iterations) so that CI keeps this script working; that report says, in
the JSON and under the table, that nothing was measured on a GPU.

    python tools/gpu_check.py [--output output/gpu-check] [--mode auto|full|tiny] [--ddp auto|on|off]

Writes ``<output>/gpu_check.json``, prints one table; exits 1 when a part failed (the others
still run; each failure is in the JSON).
"""
import argparse
import contextlib
import copy
import gc
import glob
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import traceback

import numpy as np
import torch
import torch.distributed as dist
from tabulate import tabulate

import fastreid_slr  # noqa: F401  (compat patches and registrations)
from fastreid.engine.train_loop import HookBase
from fastreid.modeling import build_model
from fastreid.solver import build_optimizer
from fastreid.utils import comm
from fastreid.utils.env import seed_all_rng
from fastreid.utils.events import EventStorage
from fastreid_slr import faiss_build, run
from fastreid_slr.engine import SLRTrainer, ensure_source_weights
from fastreid_slr.engine.records import RunRecord
from fastreid_slr.neighbour_search import TorchSearch
from fastreid_slr.utils import unwrap
from procedural_reid import add_procedural_config, apply_procedural_config
from slr_refine import BlasSearch, FaissSearch, cluster_dbscan, clustering_distance, eps_from_rho

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "SLR", "d2m.yml")
RUNS = ("source", "slr", "amp", "ddp")  # the training folders under --output, renewed on every check
RANK_RUN = "--rank-run"  # first argument of the DDP child: fast-reid's command line follows
PROCEDURAL = run.ConfigExtension(add_procedural_config, apply_procedural_config)
NO_GPU_NOTE = ("No CUDA device: this is the tiny CPU mode (dual ResNet-18, 32x16, a few iterations). Nothing in "
               "this report was measured on a GPU.")

# The procedural data and the cluster settings it needs (~20 images per identity, as the demo);
# the model, input size, batch and optimiser stay configs/SLR/d2m.yml's.
DATA_OPTS = {
    "DATASETS.NAMES": '("ProceduralB",)', "DATASETS.TESTS": '("ProceduralB",)',
    "SLR.SOURCE.DATASETS": '("ProceduralA",)', "MODEL.BACKBONE.PRETRAIN": "False",
    "DATASETS.PROCEDURAL.IMAGES_PER_CAMERA": "6", "SLR.CLUSTER.K1": "15", "SLR.CLUSTER.K2": "4",
    # ABMT's per-epoch eps follows the features' scale, whatever two short epochs leave: the
    # smallest 1 % of the pairs (~3 % are same-identity pairs here)
    "SLR.CLUSTER.RHO": "0.01", "SLR.SOURCE.WARMUP_EPOCHS": "0", "SLR.SOURCE.STEPS": "[100]",
    "SLR.CHECKPOINT.KEEP_LAST": "1",
    "SLR.SOURCE.ITERS_PER_EPOCH": "0",  # stage-1 epochs of one pass over the small source, not ABMT's 200 steps
}
# Short epochs of the full-size network (on CUDA).
FULL_OPTS = {"SLR.SOURCE.MAX_EPOCH": "2", "SOLVER.MAX_EPOCH": "2", "SLR.ITERS_PER_EPOCH": "20",
             "TEST.EVAL_PERIOD": "2", "DATALOADER.NUM_WORKERS": str(min(8, os.cpu_count() or 1))}
# The tiny CPU mode: small network, images and data, a few iterations.
TINY_OPTS = {
    "MODEL.DEVICE": "cpu", "MODEL.BACKBONE.DEPTH": "18x", "MODEL.BACKBONE.FEAT_DIM": "512",
    "INPUT.SIZE_TRAIN": "[32,16]", "INPUT.SIZE_TEST": "[32,16]", "INPUT.PADDING.SIZE": "2",
    "DATASETS.PROCEDURAL.NUM_TRAIN_IDS": "12", "DATASETS.PROCEDURAL.NUM_TEST_IDS": "8",
    "DATASETS.PROCEDURAL.NUM_CAMERAS": "3", "DATASETS.PROCEDURAL.IMAGES_PER_CAMERA": "3",
    "SOLVER.IMS_PER_BATCH": "8", "SLR.SOURCE.IMS_PER_BATCH": "16", "SLR.SOURCE.MAX_EPOCH": "3",
    "SOLVER.MAX_EPOCH": "2", "SLR.ITERS_PER_EPOCH": "2", "TEST.EVAL_PERIOD": "2", "TEST.IMS_PER_BATCH": "64",
    "DATALOADER.NUM_WORKERS": "0", "SLR.CLUSTER.K1": "10", "SLR.CLUSTER.K2": "3",
    # ~87 images of 12 identities: ~7 % of the pairs are same-identity, but a three-epoch model ranks
    # them poorly; the smallest 10 % gave 5-11 clusters over seeds 0-5 (3 %: 1-3, a seed failed)
    "SLR.CLUSTER.RHO": "0.1", "SLR.REFINE.MIN_CLUSTER_SIZE": "3",
}
# Iterations of each timed part: (warm-up, timed); the AMP epoch's (bfloat16 on a CPU without
# bfloat16 units is far slower than float32: docs/performance.md, "CPU runs").
FULL_STEPS = {"step_time": (5, 50), "features": (2, 10), "repeat": 10, "amp": 20}
TINY_STEPS = {"step_time": (1, 3), "features": (1, 2), "repeat": 2, "amp": 1}


def opts_list(opts: dict) -> list:
    return [x for item in opts.items() for x in item]


def check_opts(full: bool, output: str) -> dict:
    """Command-line opts on top of configs/SLR/d2m.yml, for this mode, writing under ``output``."""
    opts = dict(DATA_OPTS, **(FULL_OPTS if full else TINY_OPTS))
    opts.update({"OUTPUT_DIR": os.path.join(output, "slr"), "SLR.SOURCE.OUTPUT_DIR": os.path.join(output, "source")})
    return opts


def build_cfg(opts: dict):
    """The config tools/train_net.py builds for CONFIG and ``opts``."""
    return run.load_config(argparse.Namespace(config_file=CONFIG, opts=opts_list(opts)), (PROCEDURAL,))


# --------------------------------------------------------------------------- measuring helpers
def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class GpuMemory:
    """Peak GPU memory of one part (None on the CPU)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        self.peak_gb = (torch.cuda.max_memory_allocated(self.device) / 2**30
                        if self.device.type == "cuda" else None)


def synthetic_batch(cfg, device, seed=0):
    """A PK training batch of ``SOLVER.IMS_PER_BATCH`` images in 0..255, on the device."""
    batch = cfg.SOLVER.IMS_PER_BATCH
    instances = cfg.DATALOADER.NUM_INSTANCE
    generator = torch.Generator().manual_seed(seed)
    return {"images": (torch.rand(batch, 3, *cfg.INPUT.SIZE_TRAIN, generator=generator) * 255).to(device),
            "targets": torch.arange(batch // instances).repeat_interleave(instances).to(device),
            "camids": torch.zeros(batch, dtype=torch.long, device=device)}


def train_steps(model, optimizer, batch, steps, device):
    """Seconds of each of ``steps`` training steps (forward, backward, Adam, and the teacher's EMA
    for SLR), each waited for. The batch is cloned per step: Baseline normalises it in place (and
    logs its accuracy to an event storage)."""
    seconds = []
    with EventStorage(0):
        for _ in range(steps):
            start = time.perf_counter()
            losses = model(dict(batch, images=batch["images"].clone()))
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            if hasattr(model, "update_teacher"):
                model.update_teacher()
            sync(device)
            seconds.append(time.perf_counter() - start)
    return seconds


@contextlib.contextmanager
def seeded_cudnn():
    """cuDNN as fastreid_slr.run sets it for SEED >= 0: deterministic algorithms, no autotuning."""
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


def median_step_s(trainer):
    """Median seconds per iteration from fast-reid's IterationTimer (None within its warm-up)."""
    if "time" not in trainer.storage.histories():
        return None
    return float(np.median([value for value, _ in trainer.storage.history("time").values()]))


def baseline_cfg(cfg, num_classes):
    """fast-reid's Baseline (BNNeck, CE + triplet) with the SLR config's backbone depth, input and batch."""
    base = cfg.clone()
    base.MODEL.META_ARCHITECTURE = "Baseline"
    base.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    base.MODEL.HEADS.NAME = "EmbeddingHead"
    base.MODEL.HEADS.NUM_CLASSES = num_classes
    base.MODEL.HEADS.NECK_FEAT = "after"
    base.MODEL.HEADS.WITH_BNNECK = True
    base.MODEL.LOSSES.NAME = ("CrossEntropyLoss", "TripletLoss")
    base.MODEL.LOSSES.TRI.HARD_MINING = True
    return base


def digest(model) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- the parts
class Check:
    """Runs the parts in order; each records its numbers, or its error, under its name."""

    def __init__(self, full: bool, output: str, ddp: str):
        self.full, self.output, self.ddp_mode = full, output, ddp
        self.opts = check_opts(full, output)
        self.cfg = build_cfg(self.opts)
        self.device = torch.device(self.cfg.MODEL.DEVICE)
        self.steps = FULL_STEPS if full else TINY_STEPS
        self.report = {"machine": self.machine(), "parts": {}}
        self.source_weights = None
        self.trainer = None

    def machine(self) -> dict:
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        try:
            faiss = str(faiss_build())
        except (RuntimeError, ImportError) as exc:
            faiss = f"ERROR: {exc}"
        return {"mode": "full" if self.full else "tiny", "gpu_measured": self.full, "gpus": gpus,
                "torch": torch.__version__, "cuda": torch.version.cuda, "faiss": faiss,
                "config": os.path.relpath(CONFIG, REPO), "model": self.model_words(),
                "note": None if self.full else NO_GPU_NOTE}

    def model_words(self) -> str:
        cfg = self.cfg
        return (f"{cfg.MODEL.BACKBONE.NAME} {cfg.MODEL.BACKBONE.DEPTH}, {cfg.INPUT.SIZE_TRAIN[0]}x"
                f"{cfg.INPUT.SIZE_TRAIN[1]}, batch {cfg.SOLVER.IMS_PER_BATCH}, PRETRAIN {cfg.MODEL.BACKBONE.PRETRAIN}")

    def run(self, name, part):
        print(f"[gpu-check] {name} ...", flush=True)
        start = time.perf_counter()
        try:
            result = part()
        except Exception as exc:  # noqa: BLE001 - one part's failure must not hide the others' numbers
            logging.getLogger("fastreid_slr").exception(f"gpu-check part {name} failed")
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc()[-4000:]}
        result.setdefault("ok", True)
        result["seconds"] = round(time.perf_counter() - start, 2)
        self.report["parts"][name] = result
        self.save()
        print(f"[gpu-check] {name}: {'ok' if result['ok'] else 'FAILED ' + result['error']} "
              f"({result['seconds']:.0f} s)", flush=True)

    def save(self):
        """The report so far, rewritten after every part: a check cut short keeps what it measured."""
        with open(os.path.join(self.output, "gpu_check.json"), "w") as f:
            json.dump(self.report, f, indent=1)

    # ------------------------------------------------------------------ pipeline
    def pipeline(self) -> dict:
        seed_all_rng(0)
        cfg = self.cfg.clone()
        cfg.freeze()
        with GpuMemory(self.device) as memory1:
            start = time.perf_counter()
            self.source_weights = ensure_source_weights(cfg)
            stage1_s = time.perf_counter() - start
        stage2 = self.cfg.clone()
        stage2.MODEL.WEIGHTS = self.source_weights
        stage2.freeze()
        os.makedirs(stage2.OUTPUT_DIR, exist_ok=True)
        seed_all_rng(0)  # again, as fastreid_slr.run does for SEED >= 0
        with GpuMemory(self.device) as memory2:
            start = time.perf_counter()
            self.trainer = SLRTrainer(stage2)
            self.trainer.resume_or_load(resume=False)
            results = self.trainer.train()
            stage2_s = time.perf_counter() - start
        epochs = RunRecord.read(stage2.OUTPUT_DIR).pseudo_labels()
        return {"stage1_s": stage1_s, "stage2_s": stage2_s, "stage2_epochs": len(epochs),
                "clusters_per_epoch": [e["clusters_after"] for e in epochs], "target_mAP": float(results["mAP"]),
                "stage2_s_per_iter": median_step_s(self.trainer),
                "peak_gpu_memory_gb": _max(memory1.peak_gb, memory2.peak_gb)}

    # ------------------------------------------------------------------ step time: SLR vs Baseline
    def step_time(self) -> dict:
        warm_up, timed = self.steps["step_time"]
        cfg = self.cfg.clone()
        cfg.MODEL.HEADS.NUM_CLASSES = cfg.SOLVER.IMS_PER_BATCH // cfg.DATALOADER.NUM_INSTANCE
        batch = synthetic_batch(cfg, self.device)
        result = {"batch": cfg.SOLVER.IMS_PER_BATCH, "iterations": timed}
        with GpuMemory(self.device) as memory:
            for name, model_cfg in (("slr", cfg), ("baseline", baseline_cfg(cfg, cfg.MODEL.HEADS.NUM_CLASSES))):
                torch.manual_seed(0)
                model = build_model(model_cfg).train()
                optimizer, _ = build_optimizer(model_cfg, model)
                train_steps(model, optimizer, batch, warm_up, self.device)
                result[f"{name}_s_per_iter"] = float(np.median(train_steps(model, optimizer, batch, timed, self.device)))
                if name == "slr":  # the cost of SEED's cuDNN settings, on the same model
                    with seeded_cudnn():
                        train_steps(model, optimizer, batch, warm_up, self.device)
                        result["slr_seeded_s_per_iter"] = float(np.median(
                            train_steps(model, optimizer, batch, timed, self.device)))
                del model, optimizer
        result["slr_over_baseline"] = result["slr_s_per_iter"] / result["baseline_s_per_iter"]
        result["seeded_over_default"] = result["slr_seeded_s_per_iter"] / result["slr_s_per_iter"]
        result["slr_images_per_s"] = result["batch"] / result["slr_s_per_iter"]
        result["peak_gpu_memory_gb"] = memory.peak_gb
        return result

    # ------------------------------------------------------------------ teacher features
    def features(self) -> dict:
        if self.trainer is None:
            raise RuntimeError("needs the pipeline part's trained model")
        warm_up, timed = self.steps["features"]
        with GpuMemory(self.device) as memory:
            start = time.perf_counter()
            features = self.trainer.extract_target_features()
            end_to_end_s = time.perf_counter() - start
            model = unwrap(self.trainer.model)
            model.eval()
            generator = torch.Generator().manual_seed(0)
            images = (torch.rand(self.cfg.TEST.IMS_PER_BATCH, 3, *self.cfg.INPUT.SIZE_TEST, generator=generator)
                      * 255).to(self.device)
            with torch.no_grad():
                for _ in range(warm_up):
                    model({"images": images})
                sync(self.device)
                start = time.perf_counter()
                for _ in range(timed):
                    model({"images": images})
                sync(self.device)
                model_s = time.perf_counter() - start
            model.train()
        return {"images": len(features), "dim": int(features.shape[1]),
                "end_to_end_images_per_s": len(features) / end_to_end_s,
                "model_only_images_per_s": timed * len(images) / model_s, "peak_gpu_memory_gb": memory.peak_gb}

    # ------------------------------------------------------------------ pseudo-labels: the search on each backend
    def pseudo_labels(self) -> dict:
        """The clustering step (ABMT's distance with its source term, DBSCAN) at Market scale on each
        search backend this machine has: torch on the GPU, faiss-gpu when installed, against the CPU's
        BLAS blocks (the tiny mode: torch and faiss on the CPU). The labels must be identical."""
        n, dim, sources = (12936, 4096, 16522) if self.full else (1200, 64, 600)
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(n // 17, dim))
        target = (centres[rng.integers(0, len(centres), n)] + 0.9 * rng.normal(size=(n, dim))).astype(np.float32)
        source = (centres[rng.integers(0, len(centres), sources)] + rng.normal(size=(sources, dim))).astype(np.float32)
        backends = {"blas": BlasSearch(), "torch": TorchSearch(self.device)}
        if self.device.type != "cuda":
            backends["faiss"] = FaissSearch()
        elif faiss_build().gpus:
            backends["faiss-gpu"] = FaissSearch(torch.cuda.current_device())
        result, labels = {"n": n, "dim": dim, "sources": sources}, {}
        for name, backend in backends.items():
            clustering_distance(target[:200], 20, 6, "abmt", source[:50], 0.1, backend)  # compile, CUDA context
            start = time.perf_counter()
            distance = clustering_distance(target, 20, 6, "abmt", source, 0.1, backend)
            labels[name] = cluster_dbscan(distance.dist, eps_from_rho(distance.dist, 0.002, distance.absent), 4,
                                          distance.absent)
            result[name] = {**{f"{part}_s": s for part, s in distance.seconds.items()},
                            "total_s": time.perf_counter() - start, "clusters": int(labels[name].max()) + 1}
        result["backends"] = list(backends)
        result["labels_identical"] = all(np.array_equal(labels["blas"], other) for other in labels.values())
        result["ok"] = result["labels_identical"]
        return result

    # ------------------------------------------------------------------ AMP
    def amp(self) -> dict:
        if self.source_weights is None:
            raise RuntimeError("needs the pipeline part's source weights")
        cfg = self.cfg.clone()
        cfg.MODEL.WEIGHTS = self.source_weights
        cfg.SOLVER.AMP.ENABLED = True
        cfg.SOLVER.MAX_EPOCH = 1
        cfg.SLR.ITERS_PER_EPOCH = self.steps["amp"]
        cfg.OUTPUT_DIR = os.path.join(self.output, "amp")
        cfg.freeze()
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        with GpuMemory(self.device) as memory:
            trainer = SLRTrainer(cfg)
            trainer.resume_or_load(resume=False)
            results = trainer.train()
        losses = [v for v, _ in trainer.storage.history("total_loss").values()]
        scaler = trainer._trainer.grad_scaler
        return {"iterations": len(losses), "losses_finite": bool(np.isfinite(losses).all()),
                "s_per_iter": median_step_s(trainer), "target_mAP": float(results["mAP"]),
                "grad_scale": float(scaler.get_scale()) if scaler.is_enabled() else None,
                "peak_gpu_memory_gb": memory.peak_gb, "ok": bool(losses) and bool(np.isfinite(losses).all())}

    # ------------------------------------------------------------------ repeatability
    def repeatable(self) -> dict:
        """Two runs of the same seeded steps from the same weights, with SEED's cuDNN settings."""
        cfg = self.cfg.clone()
        cfg.MODEL.HEADS.NUM_CLASSES = cfg.SOLVER.IMS_PER_BATCH // cfg.DATALOADER.NUM_INSTANCE
        torch.manual_seed(0)
        initial = build_model(cfg).train()
        digests = []
        with seeded_cudnn():
            for _ in range(2):
                torch.manual_seed(1)
                model = copy.deepcopy(initial)
                optimizer, _ = build_optimizer(cfg, model)
                for step in range(self.steps["repeat"]):
                    train_steps(model, optimizer, synthetic_batch(cfg, self.device, seed=step), 1, self.device)
                digests.append(digest(model))
        return {"steps": self.steps["repeat"], "identical": digests[0] == digests[1]}

    # ------------------------------------------------------------------ DDP through --num-gpus 2
    def ddp(self) -> dict:
        if self.source_weights is None:
            raise RuntimeError("needs the pipeline part's source weights")
        self.trainer = None  # the last part: hand this process's GPU memory to the ranks
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
        folder = os.path.join(self.output, "ddp")
        per_rank = 2 * self.cfg.DATALOADER.NUM_INSTANCE  # the least a rank's PK batch takes (tiny mode's 8 is less)
        opts = dict(self.opts, **{"SLR.SOURCE.WEIGHTS": self.source_weights, "OUTPUT_DIR": folder,
                                  "SOLVER.IMS_PER_BATCH": str(max(self.cfg.SOLVER.IMS_PER_BATCH, 2 * per_rank))})
        command = [sys.executable, os.path.abspath(__file__), RANK_RUN, "--config-file", CONFIG, "--num-gpus", "2",
                   "--dist-url", "auto", *opts_list(opts)]
        with open(os.path.join(self.output, "ddp.log"), "w") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        if done.returncode != 0:
            raise RuntimeError(f"the 2-rank run failed (rc {done.returncode}): see {log.name}")
        ranks = []
        for rank in (0, 1):
            with open(os.path.join(folder, f"rank{rank}.json")) as f:
                ranks.append(json.load(f))
        same = ranks[0]["labels"] == ranks[1]["labels"] and ranks[0]["epochs"] == ranks[1]["epochs"]
        backends = [r["backend"] for r in ranks]
        expected = "nccl" if self.device.type == "cuda" else "gloo"
        return {"backends": backends, "devices": [r["device"] for r in ranks], "epochs": len(ranks[0]["epochs"]),
                "labels_identical": same, "ok": same and backends == [expected, expected]}

    def ddp_wanted(self) -> tuple:
        if self.ddp_mode == "off":
            return False, "--ddp off"
        if self.ddp_mode == "on":
            return True, ""
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return gpus >= 2, f"{gpus} GPU(s) visible; the 2-GPU NCCL run needs two"


def _max(*values):
    present = [v for v in values if v is not None]
    return max(present) if present else None


# --------------------------------------------------------------------------- DDP child: per-rank labels
class _RankRecord(HookBase):
    """After training, this rank's labels per epoch, backend and device, into OUTPUT_DIR/rank<r>.json."""

    def __init__(self):
        self.epochs = []

    def before_epoch(self):  # after the pseudo-label hook's relabelling, which precedes it
        labels = self.trainer.pseudo_label_hook.labels
        self.epochs.append(hashlib.sha256(np.asarray(labels).tobytes()).hexdigest())

    def after_train(self):
        record = {"rank": comm.get_rank(), "backend": dist.get_backend(), "device": str(unwrap(self.trainer.model).device),
                  "labels": self.trainer.pseudo_label_hook.labels.tolist(), "epochs": self.epochs}
        with open(os.path.join(self.trainer.cfg.OUTPUT_DIR, f"rank{comm.get_rank()}.json"), "w") as f:
            json.dump(record, f)


class RankRecordingTrainer(SLRTrainer):
    """tools/train_net.py's trainer, recording what this rank trained on."""

    def build_hooks(self):
        return super().build_hooks() + [_RankRecord()]


def rank_run(argv):
    """tools/train_net.py's run (``fastreid_slr.run.launch_main``) with ``RankRecordingTrainer``."""
    run.launch_main(run.argument_parser().parse_args(argv), trainer_cls=RankRecordingTrainer,
                    extensions=(PROCEDURAL,))


# --------------------------------------------------------------------------- report
def _fmt(value, unit="", digits=3):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}g}{unit}"
    return f"{value}{unit}"


def table(report) -> str:
    """One row per part: what it ran, what it measured, ok / FAILED."""
    parts = report["parts"]

    def get(part, key, unit=""):
        return _fmt(parts.get(part, {}).get(key), unit)

    ddp = parts.get("ddp", {})
    rows = [
        ("pipeline", "stage 1 + two stage-2 epochs",
         f"{get('pipeline', 'stage1_s', ' s')} + {get('pipeline', 'stage2_s', ' s')}; clusters per epoch "
         f"{get('pipeline', 'clusters_per_epoch')}; target mAP {get('pipeline', 'target_mAP', '%')}"),
        ("step_time", f"SLR vs fast-reid Baseline, batch {get('step_time', 'batch')}",
         f"{get('step_time', 'slr_s_per_iter', ' s')} vs {get('step_time', 'baseline_s_per_iter', ' s')} per iteration "
         f"({get('step_time', 'slr_over_baseline', 'x')}); SLR {get('step_time', 'slr_images_per_s', ' img/s')}; "
         f"with SEED's cuDNN settings {get('step_time', 'slr_seeded_s_per_iter', ' s')} "
         f"({get('step_time', 'seeded_over_default', 'x')})"),
        ("features", f"teacher, {get('features', 'images')} images, {get('features', 'dim')}-d",
         f"{get('features', 'end_to_end_images_per_s', ' img/s')} with the loader, "
         f"{get('features', 'model_only_images_per_s', ' img/s')} model only"),
        ("pseudo_labels", f"N={get('pseudo_labels', 'n')}, D={get('pseudo_labels', 'dim')}, "
                          f"{get('pseudo_labels', 'sources')} source images",
         "; ".join(f"{name}: search {_fmt(parts['pseudo_labels'][name]['search_s'], ' s')}, step "
                   f"{_fmt(parts['pseudo_labels'][name]['total_s'], ' s')}"
                   for name in parts.get("pseudo_labels", {}).get("backends", []))
         + f"; labels identical {get('pseudo_labels', 'labels_identical')}"),
        ("amp", "one stage-2 epoch, SOLVER.AMP.ENABLED",
         f"{get('amp', 'iterations')} iterations, losses finite {get('amp', 'losses_finite')}, "
         f"{get('amp', 's_per_iter', ' s')} per iteration"),
        ("repeatable", f"{get('repeatable', 'steps')} seeded steps, twice", f"bit-identical {get('repeatable', 'identical')}"),
        ("ddp", "--num-gpus 2", f"backends {get('ddp', 'backends')}, labels identical {get('ddp', 'labels_identical')}"
         if ddp.get("ran") else ddp.get("reason", "-")),
    ]
    lines = [(name, what, measured, "FAILED: " + parts[name]["error"][:80] if parts.get(name, {}).get("ok") is False
              else "ok" if parts.get(name, {}).get("ran", True) else "-") for name, what, measured in rows]
    lines.append(("peak GPU memory", "largest part", _fmt(report.get("peak_gpu_memory_gb"), " GB"), "-"))
    return tabulate(lines, headers=["part", "what", "measured", "status"], tablefmt="github")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=os.path.join(REPO, "output", "gpu-check"))
    parser.add_argument("--mode", choices=("auto", "full", "tiny"), default="auto",
                        help="full: d2m.yml's model on CUDA; tiny: the CPU mode; auto: full when CUDA is there")
    parser.add_argument("--ddp", choices=("auto", "on", "off"), default="auto",
                        help="the 2-rank run: auto with two GPUs; on: also without (gloo on the CPU)")
    parser.add_argument("--keep", action="store_true", help="keep the runs' checkpoints (GBs in full mode)")
    args = parser.parse_args()
    full = args.mode == "full" or (args.mode == "auto" and torch.cuda.is_available())
    if full and not torch.cuda.is_available():
        parser.error("--mode full needs CUDA")
    for run in RUNS:  # a previous check's records would be appended to
        shutil.rmtree(os.path.join(args.output, run), ignore_errors=True)
    os.makedirs(args.output, exist_ok=True)
    log = logging.FileHandler(os.path.join(args.output, "gpu_check.log"))
    log.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    for name in ("fastreid", "fastreid_slr"):
        logging.getLogger(name).addHandler(log)
        logging.getLogger(name).setLevel(logging.INFO)
    if not full and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))

    check = Check(full, args.output, args.ddp)
    apply_procedural_config(check.cfg)
    torch.backends.cudnn.benchmark = check.cfg.CUDNN_BENCHMARK  # as fast-reid's default_setup does
    print(f"[gpu-check] {check.report['machine']['model']} ({'CUDA' if full else 'tiny CPU mode'})", flush=True)
    check.run("pipeline", check.pipeline)
    check.run("step_time", check.step_time)
    check.run("features", check.features)
    check.run("pseudo_labels", check.pseudo_labels)
    check.run("amp", check.amp)
    check.run("repeatable", check.repeatable)
    wanted, reason = check.ddp_wanted()
    if wanted:
        check.run("ddp", check.ddp)
        check.report["parts"]["ddp"]["ran"] = True
    else:
        check.report["parts"]["ddp"] = {"ran": False, "reason": f"not run: {reason}"}
    report = check.report
    report["peak_gpu_memory_gb"] = _max(*(p.get("peak_gpu_memory_gb") for p in report["parts"].values()))
    report["failed"] = [name for name, part in report["parts"].items() if part.get("ok") is False]
    check.save()
    if not args.keep:
        for checkpoint in glob.glob(os.path.join(glob.escape(args.output), "*", "*.pth")):
            os.remove(checkpoint)
    machine = report["machine"]
    print(f"\ngpu-check: {machine['model']}; GPUs: {', '.join(machine['gpus']) or 'none'}; faiss: {machine['faiss']}")
    print(table(report))
    if machine["note"]:
        print(machine["note"])
    print(f"JSON: {os.path.join(args.output, 'gpu_check.json')}" + (f"; FAILED: {', '.join(report['failed'])}"
                                                                     if report["failed"] else ""))
    sys.exit(1 if report["failed"] else 0)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == RANK_RUN:
        rank_run(sys.argv[2:])
    else:
        main()
