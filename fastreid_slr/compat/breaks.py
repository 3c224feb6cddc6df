"""The breaks: fast-reid 1.4.0 code that cannot work on today's torch / torchvision / numpy /
Python, on a machine without CUDA, or as pip installs it. Each fix changes nothing where fast-reid
works."""
import collections
import collections.abc
import functools
import importlib
import inspect
import os
import sys
import types

import numpy as np
import torch

from ..launch import distributed_worker
from ..utils import module_device_ddp, pretrained_weights
from . import original, patch, replace
from .dataloader import DeviceAwareDataLoaderX


# --------------------------------------------------------------------------- today's torch, numpy, Python
@patch("torch_six")
def _torch_six() -> bool:
    """fastreid.data.build imports ``string_classes`` from ``torch._six``, removed in torch 2.0."""
    try:
        importlib.import_module("torch._six")
        return False
    except ImportError:
        pass
    shim = types.ModuleType("torch._six")
    shim.string_classes = (str, bytes)
    replace(sys.modules, "torch._six", shim)
    return True


@patch("collections_abc_aliases")
def _collections_abc_aliases() -> bool:
    """``from collections import Mapping`` (data/build.py, evaluation/testing.py) fails on Python ≥3.10."""
    missing = [name for name in ("Mapping", "MutableMapping", "Sequence", "Iterable") if not hasattr(collections, name)]
    for name in missing:
        replace(collections, name, getattr(collections.abc, name))
    return bool(missing)


@patch("random_affine_kwargs")
def _random_affine_kwargs() -> bool:
    """``RandomAffine(resample=, fillcolor=)`` became ``interpolation=, fill=`` in torchvision."""
    import torchvision.transforms as T
    import fastreid.data.transforms.build as transforms_build

    if "resample" in inspect.signature(T.RandomAffine).parameters:
        return False

    def random_affine(*args, resample=None, fillcolor=None, **kwargs):
        if resample is not None:
            kwargs.setdefault(
                "interpolation",
                resample if isinstance(resample, T.InterpolationMode) else T.InterpolationMode.NEAREST,
            )
        if fillcolor is not None:
            kwargs.setdefault("fill", fillcolor)
        return T.RandomAffine(*args, **kwargs)

    # A private view of torchvision.transforms for fast-reid's module only; torchvision stays untouched.
    view = types.ModuleType("torchvision.transforms (fastreid_slr compat view)")
    view.__dict__.update({k: v for k, v in vars(T).items() if not k.startswith("__")})
    view.RandomAffine = random_affine
    replace(transforms_build, "T", view)
    return True


@patch("to_tensor_numpy2")
def _to_tensor_numpy2() -> bool:
    """``np.array(pic, copy=False)`` raises on numpy 2 when a copy is needed (modes 1, I, I;16, F)."""
    if np.lib.NumpyVersion(np.__version__) < "2.0.0":
        return False
    from PIL import Image
    import fastreid.data.transforms.functional as functional
    import fastreid.data.transforms.transforms as transforms

    fastreid_to_tensor = original(functional, "to_tensor")
    dtypes = {"I": np.int32, "I;16": np.int16, "F": np.float32}

    @functools.wraps(fastreid_to_tensor)
    def to_tensor(pic):
        if isinstance(pic, Image.Image):
            if pic.mode == "1":
                pic = pic.convert("L")  # 0/255, as fast-reid's 255 * bit
            elif pic.mode in dtypes:
                pic = np.asarray(pic, dtype=dtypes[pic.mode])
        return fastreid_to_tensor(pic)

    replace(functional, "to_tensor", to_tensor)
    replace(transforms, "to_tensor", to_tensor)
    return True


@patch("no_contiguous_params")
def _no_contiguous_params() -> bool:
    """torch 2's ``zero_grad(set_to_none=True)`` drops the contiguous buffer's gradient, so with
    ``ContiguousParams`` the optimiser never sees a gradient and nothing learns — silently.
    Build optimisers over the ordinary parameters instead."""
    set_to_none = inspect.signature(torch.optim.Optimizer.zero_grad).parameters.get("set_to_none")
    if set_to_none is None or set_to_none.default is not True:
        return False
    import fastreid.engine.defaults as defaults
    import fastreid.solver as solver
    import fastreid.solver.build as solver_build

    fastreid_build_optimizer = original(solver_build, "build_optimizer")

    @functools.wraps(fastreid_build_optimizer)
    def build_optimizer(cfg, model, contiguous=False):
        return fastreid_build_optimizer(cfg, model, contiguous=contiguous)

    for module in (solver_build, solver, defaults):
        replace(module, "build_optimizer", build_optimizer)
    return True


# --------------------------------------------------------------------------- a machine without CUDA
@patch("cpu_safe_dataloader")
def _cpu_safe_dataloader() -> bool:
    """DataLoaderX hard-codes CUDA streams, and a crash in its prefetch thread hangs forever."""
    import fastreid.data.build as build
    import fastreid.data.data_utils as data_utils

    replace(data_utils, "DataLoaderX", DeviceAwareDataLoaderX)
    replace(build, "DataLoaderX", DeviceAwareDataLoaderX)
    return True


@patch("launch_without_cuda")
def _launch_without_cuda() -> bool:
    """``launch``'s ranks assert CUDA and start NCCL: gloo ranks when there is no CUDA (NCCL ranks,
    each on its GPU before NCCL starts, when there is)."""
    # ``fastreid.engine.launch`` the attribute is the function; the module is only in sys.modules.
    replace(importlib.import_module("fastreid.engine.launch"), "_distributed_worker", distributed_worker)
    return True


@patch("ddp_cpu_device_ids")
def _ddp_cpu_device_ids() -> bool:
    """DefaultTrainer wraps the model in DDP with ``device_ids=[local_rank]``, which DDP refuses for
    a CPU model."""
    import fastreid.engine.defaults as defaults

    replace(defaults, "DistributedDataParallel", module_device_ddp)
    return True


# --------------------------------------------------------------------------- fast-reid as pip installs it
@patch("backbone_config_paths")
def _backbone_config_paths() -> bool:
    """``build_regnet_backbone`` and ``build_effnet_backbone`` open their YAML files by a path
    relative to the working directory ("fastreid/modeling/..."), which only exists inside a
    fast-reid checkout; read them from the installed package instead."""
    import fastreid
    from fastreid.modeling.backbones.regnet.config import cfg as regnet_cfg

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastreid.__file__)))
    fastreid_merge = original(regnet_cfg, "merge_from_file")

    def merge_from_file(cfg_filename):
        if not os.path.isabs(cfg_filename) and not os.path.exists(cfg_filename):
            cfg_filename = os.path.join(package_parent, cfg_filename)
        return fastreid_merge(cfg_filename)

    replace(regnet_cfg, "merge_from_file", merge_from_file)  # the one config node both builders merge into
    return True


def _matching_tensors(model, loaded):
    """OSNet's rule: the model's state dict, updated with the loaded tensors whose name (less a
    ``module.`` prefix) and shape match."""
    merged = model.state_dict()
    for name, tensor in loaded.items():
        name = name[len("module."):] if name.startswith("module.") else name
        if name in merged and merged[name].shape == tensor.shape:
            merged[name] = tensor
    return merged


def _whole_file(loaded):
    return loaded


def _model_state(loaded):
    return loaded["model_state"]


def _local_first(module, unpack):
    """``module.init_pretrained_weights(key)``: the cached file, else fast-reid's download."""
    fastreid_init = original(module, "init_pretrained_weights")

    @functools.wraps(fastreid_init)
    def init_pretrained_weights(key):
        url = module.model_urls[key]
        return pretrained_weights(url, url.split("/")[-1], unpack, lambda: fastreid_init(key))

    return init_pretrained_weights


@patch("imagenet_weights_local_first")
def _imagenet_weights_local_first() -> bool:
    """With ``PRETRAIN`` and no ``PRETRAIN_PATH``, fast-reid's loaders import gdown (which fastreid
    1.4.0 does not declare) before they look for the cached file: every such run fails, file or no
    file. Load the cached file first, then download as fast-reid does; one message when neither works."""
    from fastreid.modeling.backbones import osnet, resnet, resnext
    from fastreid.modeling.backbones.regnet import effnet, regnet

    for module, unpack in ((resnet, _whole_file), (resnext, _whole_file), (regnet, _model_state),
                           (effnet, _model_state)):
        replace(module, "init_pretrained_weights", _local_first(module, unpack))
    fastreid_osnet = original(osnet, "init_pretrained_weights")

    @functools.wraps(fastreid_osnet)
    def osnet_weights(model, key=""):
        return pretrained_weights(osnet.model_urls[key], key + "_imagenet.pth",
                                  lambda loaded: _matching_tensors(model, loaded), lambda: fastreid_osnet(model, key))

    replace(osnet, "init_pretrained_weights", osnet_weights)
    return True
