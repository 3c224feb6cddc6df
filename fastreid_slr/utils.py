"""Helpers shared across the plugin: atomic writes, the DDP wrappers, the ImageNet-weights rule,
and small views of fast-reid's objects."""
import logging
import os
from typing import Any, Callable

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



def module_device_ddp(module, *args, device_ids=None, **kwargs):
    """DDP for the module's own device: ``device_ids`` only for a CUDA module (fast-reid passes
    ``[local_rank]`` for every model, which DDP refuses for a CPU one)."""
    from torch.nn.parallel import DistributedDataParallel

    on_cuda = any(p.is_cuda for p in module.parameters())
    return DistributedDataParallel(module, *args, device_ids=device_ids if on_cuda else None, **kwargs)


def distributed_data_parallel(module, *args, **kwargs):
    """The plugin's DDP wrapper: ``module_device_ddp``, searching for parameters without gradient
    when the model says its losses leave some (``leaves_parameters_unused``: SLR with λ1 = λ2 = 0);
    without the search DDP stops at the second step."""
    kwargs.setdefault("find_unused_parameters", bool(getattr(module, "leaves_parameters_unused", False)))
    return module_device_ddp(module, *args, **kwargs)


def torch_home_checkpoint(filename: str) -> str:
    """Where fast-reid caches a downloaded file: ``$TORCH_HOME/checkpoints/<filename>``."""
    torch_home = os.path.expanduser(
        os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")))
    return os.path.join(torch_home, "checkpoints", filename)


def pretrained_weights(url: str, filename: str, unpack: Callable[[dict], Any], download: Callable[[], Any]):
    """A backbone's ImageNet weights: the file in ``$TORCH_HOME/checkpoints`` first (``unpack``
    turns it into what fast-reid's loader returns), else fast-reid's own ``download`` of ``url``
    (gdown, network); one message naming both when neither works."""
    path = torch_home_checkpoint(filename)
    if os.path.isfile(path):
        logger.info(f"Loading pretrained model from {path}")
        return unpack(torch.load(path, map_location=torch.device("cpu"), weights_only=True))
    try:
        return download()
    except Exception as exc:  # noqa: BLE001 - any failure of the download ends in the one message
        raise FileNotFoundError(
            f"MODEL.BACKBONE.PRETRAIN is True, but the ImageNet weights are neither on this machine nor "
            f"downloadable. Local file: put {url} at {path} (or set TORCH_HOME), or point "
            f"MODEL.BACKBONE.PRETRAIN_PATH at a copy. Download: fast-reid's own, which needs the gdown "
            f"package and network access, failed with {type(exc).__name__}: {exc}. Or set "
            f"MODEL.BACKBONE.PRETRAIN False.") from exc
