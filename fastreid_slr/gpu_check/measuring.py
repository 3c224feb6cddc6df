"""How the parts measure: waiting for the GPU, its peak memory, synthetic batches and timed
training steps, SEED's cuDNN settings, and digests of weights to compare bit for bit."""
import contextlib
import hashlib
import time
from typing import Iterable, Optional, Tuple

import numpy as np
import torch
from fastreid.utils.events import EventStorage


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class GpuMemory:
    """Peak GPU memory of one part (None on the CPU)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_gb: Optional[float] = None

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak_gb = torch.cuda.max_memory_allocated(self.device) / 2**30


def largest(*values) -> Optional[float]:
    """The largest of the values that are not None (None when none is)."""
    present = [v for v in values if v is not None]
    return max(present) if present else None


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


def median_step_s(trainer) -> Optional[float]:
    """Median seconds per iteration from fast-reid's IterationTimer (None within its warm-up)."""
    if "time" not in trainer.storage.histories():
        return None
    return float(np.median([value for value, _ in trainer.storage.history("time").values()]))


def digest(named_tensors: Iterable[Tuple[str, torch.Tensor]]) -> str:
    """One hash of the names and the exact bytes of the tensors."""
    h = hashlib.sha256()
    for name, tensor in named_tensors:
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
