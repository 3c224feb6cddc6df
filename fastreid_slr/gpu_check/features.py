"""The features part: how fast the teacher's features come, the pass that precedes every
clustering against the model alone on batches already in memory."""
import time

import torch

from ..utils import unwrap
from .measuring import GpuMemory, sync
from .part import Part, fmt


class Features(Part):
    """The teacher's features of the target train set (the pipeline's trainer: image cache, or the
    loader), and the model alone on batches of ``TEST.IMS_PER_BATCH`` random images (images/s)."""

    name = "features"
    what = "the teacher's features"

    def run(self, context) -> dict:
        trainer = context.trainer
        if trainer is None:
            raise RuntimeError("needs the pipeline part's trained model")
        warm_up, timed = context.steps["features"]
        cfg = context.cfg
        with GpuMemory(context.device) as memory:
            start = time.perf_counter()
            features = trainer.extract_target_features()
            end_to_end_s = time.perf_counter() - start
            model = unwrap(trainer.model)
            model.eval()
            generator = torch.Generator().manual_seed(0)
            images = (torch.rand(cfg.TEST.IMS_PER_BATCH, 3, *cfg.INPUT.SIZE_TEST, generator=generator)
                      * 255).to(context.device)
            with torch.no_grad():
                for _ in range(warm_up):
                    model({"images": images})
                sync(context.device)
                start = time.perf_counter()
                for _ in range(timed):
                    model({"images": images})
                sync(context.device)
                model_s = time.perf_counter() - start
            model.train()
        return {"images": len(features), "dim": int(features.shape[1]),
                "end_to_end_images_per_s": len(features) / end_to_end_s,
                "model_only_images_per_s": timed * len(images) / model_s, "peak_gpu_memory_gb": memory.peak_gb}

    def summary(self, result: dict) -> str:
        return (f"{result['images']} images, {result['dim']}-d: {fmt(result['end_to_end_images_per_s'], ' img/s')} "
                f"as the pipeline extracts them, {fmt(result['model_only_images_per_s'], ' img/s')} model only")
