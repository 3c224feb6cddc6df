"""The parts that train the check's config: the whole pipeline (stage 1, two stage-2 epochs), and
one stage-2 epoch under AMP."""
import os
import time

import numpy as np
from fastreid.utils.env import seed_all_rng

from ..engine import SLRTrainer, ensure_source_weights
from ..engine.records import RunRecord
from .measuring import GpuMemory, largest, median_step_s
from .part import Part, fmt


def adapt(cfg, trainer_cls=SLRTrainer):
    """Stage 2 of ``cfg`` (frozen here) in this process, as ``fastreid_slr.run.main`` trains it:
    the trained trainer and its last evaluation."""
    cfg.freeze()
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=False)
    return trainer, trainer.train()


class Pipeline(Part):
    """Stage 1 on the source, then stage 2 from its weights: clustering, refinement, resized
    classifiers and teacher evaluation, seeded as ``fastreid_slr.run`` seeds them. Leaves stage 1's
    weights and the trained stage-2 trainer to the later parts."""

    name = "pipeline"
    what = "stage 1 + two stage-2 epochs"

    def run(self, context) -> dict:
        seed_all_rng(0)
        stage1 = context.cfg.clone()
        stage1.freeze()
        with GpuMemory(context.device) as memory1:
            start = time.perf_counter()
            context.source_weights = ensure_source_weights(stage1)
            stage1_s = time.perf_counter() - start
        seed_all_rng(0)  # again, as fastreid_slr.run does for SEED >= 0
        with GpuMemory(context.device) as memory2:
            start = time.perf_counter()
            context.trainer, results = adapt(context.stage2_config(context.cfg, "slr"))
            stage2_s = time.perf_counter() - start
        epochs = RunRecord.read(context.trainer.cfg.OUTPUT_DIR).pseudo_labels()
        return {"stage1_s": stage1_s, "stage2_s": stage2_s, "stage2_epochs": len(epochs),
                "clusters_per_epoch": [e["clusters_after"] for e in epochs], "target_mAP": float(results["mAP"]),
                "stage2_s_per_iter": median_step_s(context.trainer),
                "peak_gpu_memory_gb": largest(memory1.peak_gb, memory2.peak_gb)}

    def summary(self, result: dict) -> str:
        return (f"{fmt(result['stage1_s'], ' s')} + {fmt(result['stage2_s'], ' s')}; clusters per epoch "
                f"{result['clusters_per_epoch']}; target mAP {fmt(result['target_mAP'], '%')}")


class Amp(Part):
    """One stage-2 epoch from stage 1's weights with ``SOLVER.AMP.ENABLED``: the losses stay finite."""

    name = "amp"
    what = "one stage-2 epoch, SOLVER.AMP.ENABLED"

    def run(self, context) -> dict:
        cfg = context.stage2_config(context.cfg, "amp")
        cfg.SOLVER.AMP.ENABLED = True
        cfg.SOLVER.MAX_EPOCH = 1
        cfg.SLR.ITERS_PER_EPOCH = context.steps["amp"]
        with GpuMemory(context.device) as memory:
            trainer, results = adapt(cfg)
        losses = [v for v, _ in trainer.storage.history("total_loss").values()]
        scaler = trainer._trainer.grad_scaler
        finite = bool(np.isfinite(losses).all())
        return {"iterations": len(losses), "losses_finite": finite, "s_per_iter": median_step_s(trainer),
                "target_mAP": float(results["mAP"]),
                "grad_scale": float(scaler.get_scale()) if scaler.is_enabled() else None,
                "peak_gpu_memory_gb": memory.peak_gb, "ok": bool(losses) and finite}

    def summary(self, result: dict) -> str:
        return (f"{result['iterations']} iterations, losses finite {fmt(result['losses_finite'])}, "
                f"{fmt(result['s_per_iter'], ' s')} per iteration")
