"""fast-reid 1.4.0 code that fails on torch 2, today's torchvision, numpy 2 or Python 3.10+."""
import collections
import collections.abc
import functools
import inspect
import os
import sys
import types

import numpy as np
import torch

from . import original, patch, replace


# The two import-time shims add names that do not exist (there is no original to restore): they
# stay after ``undo``, and report True whenever the name is theirs.
_SHIM = "_fastreid_slr_shim"
_ALIASES = ("Mapping", "MutableMapping", "Sequence", "Iterable")
_ADDED_ALIASES = set()


@patch("torch_six")
def _torch_six() -> bool:
    """fastreid.data.build imports ``string_classes`` from ``torch._six``, removed in torch 2.0."""
    try:
        import torch._six as six
        return getattr(six, _SHIM, False)
    except ImportError:
        pass
    shim = types.ModuleType("torch._six")
    shim.string_classes = (str, bytes)
    setattr(shim, _SHIM, True)
    sys.modules["torch._six"] = shim
    return True


@patch("collections_abc_aliases")
def _collections_abc_aliases() -> bool:
    """``from collections import Mapping`` (data/build.py, evaluation/testing.py) fails on Python ≥3.10."""
    for name in _ALIASES:
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
            _ADDED_ALIASES.add(name)
    return bool(_ADDED_ALIASES)


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


@patch("metric_printer_same_iteration")
def _metric_printer_same_iteration() -> bool:
    """CommonMetricPrinter divides by the iterations since its last write when the iteration timer
    has no history yet (the first 3 iterations of a run); two writes at one iteration (the last
    step's, then the epoch's) divide by zero. Skip the second write."""
    from fastreid.utils.events import CommonMetricPrinter, get_event_storage

    fastreid_write = original(CommonMetricPrinter, "write")

    @functools.wraps(fastreid_write)
    def write(self):
        last = getattr(self, "_last_write", None)
        if last is not None and last[0] == get_event_storage().iter:
            return
        fastreid_write(self)

    replace(CommonMetricPrinter, "write", write)
    return True


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
