"""Helpers shared across the plugin that are not patches: atomic writes, the DDP wrapper, local
ImageNet weights, and small views of fast-reid's objects."""
import logging
import os
from typing import Callable, Dict

import numpy as np
import torch

logger = logging.getLogger(__name__)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a (Distributed)DataParallel wrapper."""
    return getattr(model, "module", model)


def numeric_results(results) -> dict:
    """fast-reid's (possibly nested, per-dataset) evaluation results as a flat dict of floats."""
    from fastreid.evaluation.testing import flatten_results_dict

    return {k: float(v) for k, v in flatten_results_dict(results).items() if isinstance(v, (int, float, np.number))}


def mean_map(flat: dict) -> float:
    """The mAP of ``numeric_results``' dict: one test set's, or the mean over several (``<set>/mAP``)."""
    values = [v for k, v in flat.items() if k == "mAP" or k.endswith("/mAP")]
    return sum(values) / len(values)


def atomic_write(path: str, write: Callable, mode: str = "wb") -> None:
    """Write ``path`` all at once: ``write(f)`` fills a hidden temporary file beside it, which then
    replaces ``path`` (``os.replace`` is atomic on POSIX and Windows). A process killed at any
    point leaves either the old file or the new one, never a truncated one; an exception removes
    the temporary file. Only one writer per path (rank 0 in fast-reid) is assumed."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp")
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable (best effort; not every file system allows it)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass



def distributed_data_parallel(module, *args, device_ids=None, **kwargs):
    """DDP for the model's own device (``device_ids`` must be None for a CPU module), searching for
    parameters without gradient when the model says its losses leave some (``leaves_parameters_unused``:
    SLR with λ1 = λ2 = 0); without the search DDP stops at the second step."""
    from torch.nn.parallel import DistributedDataParallel

    on_cuda = any(p.is_cuda for p in module.parameters())
    kwargs.setdefault("find_unused_parameters", bool(getattr(module, "leaves_parameters_unused", False)))
    return DistributedDataParallel(module, *args, device_ids=device_ids if on_cuda else None, **kwargs)



def _torch_home_checkpoint(filename: str) -> str:
    torch_home = os.path.expanduser(
        os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")))
    return os.path.join(torch_home, "checkpoints", filename)


def local_pretrained_weights(url: str, filename: str = "") -> Dict[str, torch.Tensor]:
    """Load ImageNet weights that fast-reid would download, from where it would cache them.

    There is no network on most training machines: instead of hanging on (or failing inside) a
    download, say which file to put where.
    """
    filename = filename or url.split("/")[-1]
    path = _torch_home_checkpoint(filename)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"MODEL.BACKBONE.PRETRAIN is True but the ImageNet weights are not on this machine. "
            f"Download {url} and place it at {path} (or set TORCH_HOME), or point "
            f"MODEL.BACKBONE.PRETRAIN_PATH at a local copy, or set MODEL.BACKBONE.PRETRAIN False.")
    logger.info(f"Loading pretrained model from {path}")
    return torch.load(path, map_location=torch.device("cpu"), weights_only=True)

