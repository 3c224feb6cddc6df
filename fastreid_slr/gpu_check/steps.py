"""The parts that time training steps on synthetic batches: SLR against fast-reid's Baseline, and
two seeded runs of the same steps compared bit for bit."""
import copy

import numpy as np
import torch
from fastreid.modeling import build_model
from fastreid.solver import build_optimizer

from .measuring import GpuMemory, digest, seeded_cudnn, synthetic_batch, train_steps
from .part import Part, fmt


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


def batch_classes_cfg(cfg):
    """``cfg`` with as many classes as a PK batch holds identities."""
    cfg = cfg.clone()
    cfg.MODEL.HEADS.NUM_CLASSES = cfg.SOLVER.IMS_PER_BATCH // cfg.DATALOADER.NUM_INSTANCE
    return cfg


class StepTime(Part):
    """Median seconds of SLR's training step (student and teacher forwards, backward, Adam, EMA)
    against fast-reid's Baseline on the same batch, then SLR again with SEED's cuDNN settings."""

    name = "step_time"
    what = "SLR vs fast-reid Baseline"

    def run(self, context) -> dict:
        warm_up, timed = context.steps["step_time"]
        cfg = batch_classes_cfg(context.cfg)
        batch = synthetic_batch(cfg, context.device)
        result = {"batch": cfg.SOLVER.IMS_PER_BATCH, "iterations": timed}

        def median_s(model, optimizer):
            train_steps(model, optimizer, batch, warm_up, context.device)
            return float(np.median(train_steps(model, optimizer, batch, timed, context.device)))

        with GpuMemory(context.device) as memory:
            for name, model_cfg in (("slr", cfg), ("baseline", baseline_cfg(cfg, cfg.MODEL.HEADS.NUM_CLASSES))):
                torch.manual_seed(0)
                model = build_model(model_cfg).train()
                optimizer, _ = build_optimizer(model_cfg, model)
                result[f"{name}_s_per_iter"] = median_s(model, optimizer)
                if name == "slr":  # the cost of SEED's cuDNN settings, on the same model
                    with seeded_cudnn():
                        result["slr_seeded_s_per_iter"] = median_s(model, optimizer)
                del model, optimizer
        result["slr_over_baseline"] = result["slr_s_per_iter"] / result["baseline_s_per_iter"]
        result["seeded_over_default"] = result["slr_seeded_s_per_iter"] / result["slr_s_per_iter"]
        result["slr_images_per_s"] = result["batch"] / result["slr_s_per_iter"]
        result["peak_gpu_memory_gb"] = memory.peak_gb
        return result

    def summary(self, result: dict) -> str:
        return (f"batch {result['batch']}: {fmt(result['slr_s_per_iter'], ' s')} vs "
                f"{fmt(result['baseline_s_per_iter'], ' s')} per iteration ({fmt(result['slr_over_baseline'], 'x')}); "
                f"SLR {fmt(result['slr_images_per_s'], ' img/s')}; with SEED's cuDNN settings "
                f"{fmt(result['slr_seeded_s_per_iter'], ' s')} ({fmt(result['seeded_over_default'], 'x')})")


class Repeatable(Part):
    """Two runs of the same seeded steps from the same weights, with SEED's cuDNN settings."""

    name = "repeatable"
    what = "seeded steps, twice"

    def run(self, context) -> dict:
        cfg = batch_classes_cfg(context.cfg)
        steps = context.steps["repeat"]
        torch.manual_seed(0)
        initial = build_model(cfg).train()
        digests = []
        with seeded_cudnn():
            for _ in range(2):
                torch.manual_seed(1)
                model = copy.deepcopy(initial)
                optimizer, _ = build_optimizer(cfg, model)
                for step in range(steps):
                    train_steps(model, optimizer, synthetic_batch(cfg, context.device, seed=step), 1, context.device)
                digests.append(digest(model.state_dict().items()))
        return {"steps": steps, "identical": digests[0] == digests[1]}

    def summary(self, result: dict) -> str:
        return f"{result['steps']} steps: bit-identical {fmt(result['identical'])}"
