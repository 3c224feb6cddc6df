"""fast-reid 1.4.0 on today's torch, numpy and Python.

fast-reid 1.4.0 (2023) was written for torch 1.13 / Python 3.8. Each break we met is one named
patch below: applied once (``apply_all`` is idempotent), and a no-op where the installed
fastreid / torch no longer needs it. ``applied_patches()`` says which ones changed something.
The list and the reasons are in DESIGN.md §4; each patch has a test that fails if the patch is
removed (tests/test_compat.py; the fault-handling ones in tests/test_faults.py).
"""
import collections
import collections.abc
import functools
import glob
import importlib
import inspect
import logging
import os
import queue
import sys
import threading
import types
from typing import Callable, Dict

import numpy as np
import torch

logger = logging.getLogger(__name__)

_PATCHES: Dict[str, Callable[[], bool]] = {}
_RESULTS: Dict[str, bool] = {}
_LOCK = threading.Lock()


def _patch(name: str):
    """Register a patch; the function returns True when it changed something."""

    def register(fn):
        _PATCHES[name] = fn
        return fn

    return register


def apply_all() -> Dict[str, bool]:
    """Apply every patch once, in definition order (import-time shims first)."""
    with _LOCK:
        for name, fn in _PATCHES.items():
            if name not in _RESULTS:
                _RESULTS[name] = bool(fn())
    return dict(_RESULTS)


def applied_patches() -> Dict[str, bool]:
    """name -> whether the patch changed anything on this installation."""
    return dict(_RESULTS)


# --------------------------------------------------------------------------- import-time shims
@_patch("torch_six")
def _torch_six() -> bool:
    """fastreid.data.build imports ``string_classes`` from ``torch._six``, removed in torch 2.0."""
    try:
        import torch._six  # noqa: F401
        return False
    except ImportError:
        pass
    shim = types.ModuleType("torch._six")
    shim.string_classes = (str, bytes)
    sys.modules["torch._six"] = shim
    return True


@_patch("collections_abc_aliases")
def _collections_abc_aliases() -> bool:
    """``from collections import Mapping`` (data/build.py, evaluation/testing.py) fails on Python ≥3.10."""
    changed = False
    for name in ("Mapping", "MutableMapping", "Sequence", "Iterable"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
            changed = True
    return changed


# --------------------------------------------------------------------------- data loading
class _PrefetchFailure:
    """Carries an exception from the prefetch thread to the consumer."""

    def __init__(self, exc: BaseException):
        self.exc = exc


_END_OF_DATA = object()


class _BackgroundPrefetcher(threading.Thread):
    """Prefetches batches in a thread; an exception in the thread is re-raised to the consumer.

    fast-reid's BackgroundGenerator dies silently on an exception and the consumer then waits on
    its queue forever.
    """

    def __init__(self, iterator, device: torch.device, max_prefetch: int = 10):
        super().__init__(daemon=True)
        self.queue = queue.Queue(max_prefetch)
        self.iterator = iterator
        self.device = device
        self.exit_event = threading.Event()
        self.start()

    def _put(self, item) -> bool:
        while not self.exit_event.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self):
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        try:
            for item in self.iterator:
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the consumer
            self._put(_PrefetchFailure(exc))
            return
        self._put(_END_OF_DATA)

    def __next__(self):
        item = self.queue.get()
        if item is _END_OF_DATA:
            self.queue.put(_END_OF_DATA)  # stay exhausted for later calls
            raise StopIteration
        if isinstance(item, _PrefetchFailure):
            raise item.exc
        return item

    def __iter__(self):
        return self

    def stop(self):
        self.exit_event.set()
        self.join(timeout=5)


class DeviceAwareDataLoaderX(torch.utils.data.DataLoader):
    """Drop-in for fast-reid's ``DataLoaderX``: prefetches in a thread, moves batches to the
    process's device, uses a CUDA side stream only when there is CUDA, and re-raises errors
    from the prefetch thread instead of hanging."""

    def __init__(self, local_rank, **kwargs):
        use_cuda = torch.cuda.is_available()
        kwargs["pin_memory"] = bool(kwargs.get("pin_memory", False)) and use_cuda
        super().__init__(**kwargs)
        self.local_rank = local_rank
        self.device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
        self.stream = torch.cuda.Stream(self.device) if use_cuda else None
        self.iter = None
        self.batch = None

    def __iter__(self):
        self.shutdown()
        self.iter = _BackgroundPrefetcher(super().__iter__(), self.device)
        self.preload()
        return self

    def preload(self):
        self.batch = next(self.iter, None)
        if self.batch is None or self.device.type != "cuda":
            return
        with torch.cuda.stream(self.stream):
            for key, value in self.batch.items():
                if isinstance(value, torch.Tensor):
                    self.batch[key] = value.to(self.device, non_blocking=True)

    def __next__(self):
        if self.stream is not None:
            torch.cuda.current_stream(self.device).wait_stream(self.stream)
        batch = self.batch
        if batch is None:
            raise StopIteration
        self.preload()
        return batch

    def shutdown(self):
        """Stop the prefetch thread (and with it the worker processes' iterator)."""
        if self.iter is not None:
            self.iter.stop()
            self.iter = None


@_patch("cpu_safe_dataloader")
def _cpu_safe_dataloader() -> bool:
    """DataLoaderX hard-codes CUDA streams, and a crash in its prefetch thread hangs forever."""
    import fastreid.data.build as build
    import fastreid.data.data_utils as data_utils

    data_utils.DataLoaderX = DeviceAwareDataLoaderX
    build.DataLoaderX = DeviceAwareDataLoaderX
    return True


@_patch("test_loader_workers")
def _test_loader_workers() -> bool:
    """The test loader hard-codes 4 workers; use ``DATALOADER.NUM_WORKERS`` like the train loader.

    Under CPU DDP, 4 workers per rank cost ~90 s per evaluation on two cores.
    """
    import fastreid.data as data
    import fastreid.data.build as build
    import fastreid.engine.defaults as defaults
    from fastreid.config import CfgNode

    original = build.build_reid_test_loader
    if getattr(original, "_slr_patched", False):
        return False
    undecorated = original.__wrapped__

    @functools.wraps(undecorated)
    def build_reid_test_loader(*args, **kwargs):
        if args and isinstance(args[0], CfgNode):
            cfg, rest = args[0], args[1:]
            explicit = build._test_loader_from_config(cfg, *rest, **kwargs)
            return undecorated(**explicit, num_workers=cfg.DATALOADER.NUM_WORKERS)
        return undecorated(*args, **kwargs)

    build_reid_test_loader._slr_patched = True
    for module in (build, data, defaults):
        module.build_reid_test_loader = build_reid_test_loader
    return True


@_patch("random_affine_kwargs")
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
    proxy = types.ModuleType("torchvision.transforms (fastreid_slr compat view)")
    proxy.__dict__.update({k: v for k, v in vars(T).items() if not k.startswith("__")})
    proxy.RandomAffine = random_affine
    transforms_build.T = proxy
    return True


@_patch("to_tensor_numpy2")
def _to_tensor_numpy2() -> bool:
    """``np.array(pic, copy=False)`` raises on numpy 2 when a copy is needed (modes 1, I, I;16, F)."""
    if np.lib.NumpyVersion(np.__version__) < "2.0.0":
        return False
    from PIL import Image
    import fastreid.data.transforms.functional as functional
    import fastreid.data.transforms.transforms as transforms

    original = functional.to_tensor
    if getattr(original, "_slr_patched", False):
        return False
    dtypes = {"I": np.int32, "I;16": np.int16, "F": np.float32}

    @functools.wraps(original)
    def to_tensor(pic):
        if isinstance(pic, Image.Image):
            if pic.mode == "1":
                pic = pic.convert("L")  # 0/255, as fast-reid's 255 * bit
            elif pic.mode in dtypes:
                pic = np.asarray(pic, dtype=dtypes[pic.mode])
        return original(pic)

    to_tensor._slr_patched = True
    functional.to_tensor = to_tensor
    transforms.to_tensor = to_tensor
    return True


@_patch("clear_missing_dataset_error")
def _clear_missing_dataset_error() -> bool:
    """A missing dataset raised ``RuntimeError('"<path>" is not found')``; name the dataset, the
    expected path and ``FASTREID_DATASETS`` instead (a usability fix, not a break)."""
    from fastreid.data.datasets.bases import Dataset
    from .data.paths import missing_dataset_error

    def check_before_run(self, required_files):
        for path in [required_files] if isinstance(required_files, str) else required_files:
            if not os.path.exists(path):
                raise missing_dataset_error(type(self).__name__, path)

    Dataset.check_before_run = check_before_run
    return True


# --------------------------------------------------------------------------- training
@_patch("no_contiguous_params")
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

    original = solver_build.build_optimizer
    if getattr(original, "_slr_patched", False):
        return False

    @functools.wraps(original)
    def build_optimizer(cfg, model, contiguous=False):
        return original(cfg, model, contiguous=contiguous)

    build_optimizer._slr_patched = True
    for module in (solver_build, solver, defaults):
        module.build_optimizer = build_optimizer
    return True


@_patch("amp_on_any_device")
def _amp_on_any_device() -> bool:
    """AMPTrainer asserts CUDA and uses the deprecated ``torch.cuda.amp``; autocast on the
    model's device instead (bfloat16 on CPU, where the grad scaler is a no-op)."""
    from fastreid.engine import train_loop
    from fastreid.utils.params import ContiguousParams

    if getattr(train_loop.AMPTrainer.run_step, "_slr_patched", False):
        return False

    def run_step(self):
        assert self.model.training, "[AMPTrainer] model was changed to eval mode!"
        start = train_loop.time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = train_loop.time.perf_counter() - start

        device_type = next(self.model.parameters()).device.type
        dtype = torch.float16 if device_type == "cuda" else torch.bfloat16
        with torch.autocast(device_type=device_type, dtype=dtype):
            loss_dict = self.model(data)
            losses = sum(loss_dict.values())

        self.optimizer.zero_grad()
        self.grad_scaler.scale(losses).backward()
        self._write_metrics(loss_dict, data_time)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        if isinstance(self.param_wrapper, ContiguousParams):
            self.param_wrapper.assert_buffer_is_valid()

    run_step._slr_patched = True
    train_loop.AMPTrainer.run_step = run_step
    return True


def distributed_data_parallel(module, *args, device_ids=None, **kwargs):
    """DDP for the model's own device (``device_ids`` must be None for a CPU module), searching for
    parameters without gradient when the model says its losses leave some (``leaves_parameters_unused``:
    SLR with λ1 = λ2 = 0); without the search DDP stops at the second step."""
    from torch.nn.parallel import DistributedDataParallel

    on_cuda = any(p.is_cuda for p in module.parameters())
    kwargs.setdefault("find_unused_parameters", bool(getattr(module, "leaves_parameters_unused", False)))
    return DistributedDataParallel(module, *args, device_ids=device_ids if on_cuda else None, **kwargs)


@_patch("ddp_cpu_device_ids")
def _ddp_cpu_device_ids() -> bool:
    """DefaultTrainer wraps the model in DDP with ``device_ids=[local_rank]``, which is an error
    for a CPU model (gloo)."""
    import fastreid.engine.defaults as defaults

    defaults.DistributedDataParallel = distributed_data_parallel
    return True


def launch_device(args):
    """MODEL.DEVICE of the run ``launch`` starts, when its arguments are fast-reid's command line
    (a config file and opts, as tools/train_net.py passes them); None otherwise."""
    command_line = args[0] if args else None
    if not (hasattr(command_line, "config_file") and hasattr(command_line, "opts")):
        return None
    from fastreid.config import get_cfg
    from .config import add_slr_config

    cfg = add_slr_config(get_cfg())
    if command_line.config_file:
        cfg.merge_from_file(command_line.config_file)
    cfg.merge_from_list(command_line.opts)
    return cfg.MODEL.DEVICE


def _distributed_worker(local_rank, main_func, world_size, num_gpus_per_machine, machine_rank,
                        dist_url, args):
    """fast-reid's worker with the backend following MODEL.DEVICE: NCCL for a CUDA run, gloo for a
    CPU one (also on a GPU host: NCCL cannot move CPU tensors). The rank's GPU is selected before
    the process group starts, so NCCL's first collective does not land every rank on GPU 0."""
    import torch.distributed as dist
    from fastreid.utils import comm

    device = launch_device(args)
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device is None:  # not fast-reid's command line: follow the hardware
        use_cuda = visible >= num_gpus_per_machine
    else:
        use_cuda = device.startswith("cuda") and visible > 0
        if use_cuda and visible < num_gpus_per_machine:
            raise RuntimeError(f"--num-gpus {num_gpus_per_machine} asks for more GPUs than the {visible} visible here")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method=dist_url,
                            world_size=world_size, rank=global_rank)
    comm.synchronize()

    assert comm._LOCAL_PROCESS_GROUP is None
    num_machines = world_size // num_gpus_per_machine
    for i in range(num_machines):
        ranks_on_i = list(range(i * num_gpus_per_machine, (i + 1) * num_gpus_per_machine))
        group = dist.new_group(ranks_on_i)
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    main_func(*args)


@_patch("launch_backend")
def _launch_backend() -> bool:
    """``launch`` asserts CUDA and hard-codes NCCL; a CPU run needs gloo, also on a GPU host."""
    # ``fastreid.engine.launch`` the attribute is the function; the module is only in sys.modules.
    launch = importlib.import_module("fastreid.engine.launch")
    launch._distributed_worker = _distributed_worker
    return True


@_patch("metric_printer_same_iteration")
def _metric_printer_same_iteration() -> bool:
    """CommonMetricPrinter divides by the iterations since its last write when the iteration timer
    has no history yet (the first 3 iterations of a run); two writes at one iteration (the last
    step's, then the epoch's) divide by zero. Skip the second write."""
    from fastreid.utils.events import CommonMetricPrinter, get_event_storage

    original = CommonMetricPrinter.write
    if getattr(original, "_slr_patched", False):
        return False

    @functools.wraps(original)
    def write(self):
        last = getattr(self, "_last_write", None)
        if last is not None and last[0] == get_event_storage().iter:
            return
        original(self)

    write._slr_patched = True
    CommonMetricPrinter.write = write
    return True


# --------------------------------------------------------------------------- evaluation
_CYTHON_WARNED = []


def _warn_no_cython():
    """Replaces fast-reid's ``compile_helper`` (``make`` inside site-packages, then ``sys.exit(1)``)."""
    if not _CYTHON_WARNED:
        _CYTHON_WARNED.append(True)
        logger.warning("fast-reid's Cython rank evaluator is not compiled; using the Python one "
                       "(55x slower measured here). `python tools/build_rank_cylib.py` compiles it "
                       "when a C compiler is present.")


@_patch("evaluator_without_cython")
def _evaluator_without_cython() -> bool:
    """ReidEvaluator runs ``make`` inside site-packages and exits the process if that fails."""
    import fastreid.evaluation.reid_evaluation as reid_evaluation

    reid_evaluation.compile_helper = _warn_no_cython
    return True


@_patch("jaccard_cpu")
def _jaccard_cpu() -> bool:
    """``compute_jaccard_distance`` calls ``.cuda()`` unless ``search_option=3`` (CPU faiss)."""
    import fastreid.utils.compute_dist as compute_dist

    original = compute_dist.compute_jaccard_distance
    if getattr(original, "_slr_patched", False):
        return False

    @functools.wraps(original)
    def compute_jaccard_distance(features, k1=20, k2=6, search_option=0, fp16=False):
        if search_option < 3 and not torch.cuda.is_available():
            search_option = 3
        return original(features, k1=k1, k2=k2, search_option=search_option, fp16=fp16)

    compute_jaccard_distance._slr_patched = True
    compute_dist.compute_jaccard_distance = compute_jaccard_distance
    return True


# --------------------------------------------------------------------------- checkpoints and weights
class UnreadableCheckpoint(RuntimeError):
    """A checkpoint file that torch cannot load (truncated, not a checkpoint, or refused as unsafe)."""


def _load_checkpoint_file(self, f: str):
    """Checkpoints load with ``weights_only=True``: a checkpoint cannot execute code. A file that
    does not load names itself (torch's zip error names none)."""
    try:
        return torch.load(f, map_location=torch.device("cpu"), weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever torch raises, the file is what the user needs
        raise UnreadableCheckpoint(f"Cannot load checkpoint {f}: {type(exc).__name__}: {str(exc)[:300]}") from exc


@_patch("safe_checkpoint_loading")
def _safe_checkpoint_loading() -> bool:
    """fast-reid's Checkpointer relies on torch.load's default, which is unsafe before torch 2.6
    and can be flipped back by ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``: make safe loading explicit,
    and name the file when it fails."""
    from fastreid.utils.checkpoint import Checkpointer

    Checkpointer._load_file = _load_checkpoint_file
    return True


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


@_patch("offline_pretrained_weights")
def _offline_pretrained_weights() -> bool:
    """``PRETRAIN`` without a path calls ``gdown`` (not even a dependency) to download weights."""
    from fastreid.modeling.backbones import osnet, resnet, resnext
    from fastreid.modeling.backbones.regnet import effnet, regnet

    for module in (resnet, resnext, regnet, effnet):
        module.init_pretrained_weights = functools.partial(
            lambda key, urls: local_pretrained_weights(urls[key]), urls=module.model_urls)

    def osnet_weights(model, key=""):
        """OSNet keeps only the tensors whose name and shape match the model, as fast-reid does."""
        loaded = local_pretrained_weights(osnet.model_urls[key], filename=key + "_imagenet.pth")
        merged = model.state_dict()
        for name, tensor in loaded.items():
            name = name[len("module."):] if name.startswith("module.") else name
            if name in merged and merged[name].shape == tensor.shape:
                merged[name] = tensor
        return merged

    osnet.init_pretrained_weights = osnet_weights
    return True


# --------------------------------------------------------------------------- faults
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


def _atomic_checkpoint_save(self, name: str, **kwargs):
    """fast-reid's ``Checkpointer.save``, written through ``atomic_write``."""
    if not self.save_dir or not self.save_to_disk:
        return
    data = {"model": self.model.state_dict()}
    for key, obj in self.checkpointables.items():
        data[key] = obj.state_dict()
    data.update(kwargs)

    basename = "{}.pth".format(name)
    save_file = os.path.join(self.save_dir, basename)
    assert os.path.basename(save_file) == basename, basename
    self.logger.info("Saving checkpoint to {}".format(save_file))
    atomic_write(save_file, lambda f: torch.save(data, f))
    self.tag_last_checkpoint(basename)
    # A temporary left by a run killed mid-save (one writer per folder: any other is stale).
    for stale in glob.glob(os.path.join(glob.escape(self.save_dir), ".*.pth.tmp")):
        try:
            os.remove(stale)
        except OSError:
            pass


def _atomic_tag_last_checkpoint(self, last_filename_basename: str):
    """fast-reid's ``Checkpointer.tag_last_checkpoint``, written through ``atomic_write``."""
    atomic_write(os.path.join(self.save_dir, "last_checkpoint"),
                 lambda f: f.write(last_filename_basename), mode="w")


@_patch("atomic_checkpoints")
def _atomic_checkpoints() -> bool:
    """``Checkpointer.save`` runs ``torch.save`` straight into the final file and
    ``tag_last_checkpoint`` rewrites ``last_checkpoint`` in place: a run killed while saving leaves
    a truncated checkpoint (stage 1's ``model_final.pth`` would then be "reused") or an empty
    ``last_checkpoint`` that ``--resume`` cannot follow. Write both atomically."""
    from fastreid.utils.checkpoint import Checkpointer

    Checkpointer.save = _atomic_checkpoint_save
    Checkpointer.tag_last_checkpoint = _atomic_tag_last_checkpoint
    return True


@_patch("image_errors_name_file")
def _image_errors_name_file() -> bool:
    """``read_image`` lets PIL's error through (``cannot identify image file <_io.BufferedReader>``),
    which does not say which of a million images is broken. Raise an OSError naming the file."""
    import fastreid.data.common as common
    import fastreid.data.data_utils as data_utils

    original = data_utils.read_image
    if getattr(original, "_slr_patched", False):
        return False

    @functools.wraps(original)
    def read_image(file_name, format=None):
        try:
            return original(file_name, format)
        except Exception as exc:  # noqa: BLE001 - any failure to decode is reported with the path
            raise OSError(f"Cannot read image {file_name}: {type(exc).__name__}: {exc}") from exc

    read_image._slr_patched = True
    data_utils.read_image = read_image
    common.read_image = read_image
    return True


@_patch("nan_loss_names_epoch")
def _nan_loss_names_epoch() -> bool:
    """``SimpleTrainer._write_metrics`` stops on a non-finite loss naming only the iteration; name
    the epoch, the iteration within it, and the loss terms too."""
    from fastreid.engine.train_loop import SimpleTrainer
    from fastreid.utils.events import get_event_storage

    original = SimpleTrainer._write_metrics
    if getattr(original, "_slr_patched", False):
        return False

    @functools.wraps(original)
    def _write_metrics(self, loss_dict, data_time):
        try:
            original(self, loss_dict, data_time)
        except FloatingPointError as exc:
            storage = get_event_storage()
            epoch = getattr(storage, "epoch", None)
            losses = {k: float(v.detach().float().cpu()) for k, v in loss_dict.items()}
            bad = ", ".join(k for k, v in losses.items() if not np.isfinite(v)) or "the mean over ranks"
            raise FloatingPointError(
                f"Loss became infinite or NaN at epoch {epoch}, iteration {self.iter} "
                f"(non-finite: {bad}; this rank's losses {losses}). Lower SOLVER.BASE_LR, or check "
                f"the data and the weights loaded; --resume restarts from the last checkpoint."
            ) from exc

    _write_metrics._slr_patched = True
    SimpleTrainer._write_metrics = _write_metrics
    return True
