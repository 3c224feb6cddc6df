"""What a CPU-only or offline machine needs from fast-reid 1.4.0: data loading without CUDA streams,
AMP and DDP on the CPU, a launcher that picks gloo, the evaluator without Cython, and ImageNet
weights from a local file instead of a download."""
import functools
import importlib
import logging
import queue
import threading

import torch

from ..utils import distributed_data_parallel, local_pretrained_weights
from . import patch, replace

logger = logging.getLogger(__name__)


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


@patch("cpu_safe_dataloader")
def _cpu_safe_dataloader() -> bool:
    """DataLoaderX hard-codes CUDA streams, and a crash in its prefetch thread hangs forever."""
    import fastreid.data.build as build
    import fastreid.data.data_utils as data_utils

    replace(data_utils, "DataLoaderX", DeviceAwareDataLoaderX)
    replace(build, "DataLoaderX", DeviceAwareDataLoaderX)
    return True


# --------------------------------------------------------------------------- training
@patch("amp_on_any_device")
def _amp_on_any_device() -> bool:
    """AMPTrainer asserts CUDA and uses the deprecated ``torch.cuda.amp``; autocast on the
    model's device instead (bfloat16 on CPU, where the grad scaler is a no-op)."""
    from fastreid.engine import train_loop
    from fastreid.utils.params import ContiguousParams

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

    replace(train_loop.AMPTrainer, "run_step", run_step)
    return True


@patch("ddp_cpu_device_ids")
def _ddp_cpu_device_ids() -> bool:
    """DefaultTrainer wraps the model in DDP with ``device_ids=[local_rank]``, which is an error
    for a CPU model (gloo)."""
    import fastreid.engine.defaults as defaults

    replace(defaults, "DistributedDataParallel", distributed_data_parallel)
    return True


def launch_device(args):
    """MODEL.DEVICE of the run ``launch`` starts, when its arguments are fast-reid's command line
    (a config file and opts, as tools/train_net.py passes them); None otherwise."""
    command_line = args[0] if args else None
    if not (hasattr(command_line, "config_file") and hasattr(command_line, "opts")):
        return None
    from fastreid.config import get_cfg

    from ..config import add_slr_config

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


@patch("launch_backend")
def _launch_backend() -> bool:
    """``launch`` asserts CUDA and hard-codes NCCL; a CPU run needs gloo, also on a GPU host."""
    # ``fastreid.engine.launch`` the attribute is the function; the module is only in sys.modules.
    replace(importlib.import_module("fastreid.engine.launch"), "_distributed_worker", _distributed_worker)
    return True


# --------------------------------------------------------------------------- evaluation and weights
_CYTHON_WARNED = []


def _warn_no_cython():
    """Replaces fast-reid's ``compile_helper`` (``make`` inside site-packages, then ``sys.exit(1)``)."""
    if not _CYTHON_WARNED:
        _CYTHON_WARNED.append(True)
        logger.warning("fast-reid's Cython rank evaluator is not compiled; using the Python one "
                       "(55x slower measured here). `python tools/build_rank_cylib.py` compiles it "
                       "when a C compiler is present.")


@patch("evaluator_without_cython")
def _evaluator_without_cython() -> bool:
    """ReidEvaluator runs ``make`` inside site-packages and exits the process if that fails."""
    import fastreid.evaluation.reid_evaluation as reid_evaluation

    replace(reid_evaluation, "compile_helper", _warn_no_cython)
    return True


@patch("offline_pretrained_weights")
def _offline_pretrained_weights() -> bool:
    """``PRETRAIN`` without a path calls ``gdown`` (not even a dependency) to download weights."""
    from fastreid.modeling.backbones import osnet, resnet, resnext
    from fastreid.modeling.backbones.regnet import effnet, regnet

    for module in (resnet, resnext, regnet, effnet):
        replace(module, "init_pretrained_weights", functools.partial(
            lambda key, urls: local_pretrained_weights(urls[key]), urls=module.model_urls))

    def osnet_weights(model, key=""):
        """OSNet keeps only the tensors whose name and shape match the model, as fast-reid does."""
        loaded = local_pretrained_weights(osnet.model_urls[key], filename=key + "_imagenet.pth")
        merged = model.state_dict()
        for name, tensor in loaded.items():
            name = name[len("module."):] if name.startswith("module.") else name
            if name in merged and merged[name].shape == tensor.shape:
                merged[name] = tensor
        return merged

    replace(osnet, "init_pretrained_weights", osnet_weights)
    return True

