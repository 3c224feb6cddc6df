"""fast-reid's ``launch`` with the ranks' backend chosen from what the caller knows.

``launch(..., device=cfg.MODEL.DEVICE)`` starts NCCL ranks for a CUDA run and gloo ranks for a CPU
one, also on a GPU host (NCCL cannot carry CPU tensors): tools/train_net.py passes the device of
the config it merged. Without ``device`` the hardware decides, NCCL when CUDA is there and gloo
otherwise: that is how fast-reid's own ``launch`` runs once the ``launch_without_cuda`` break
installs ``distributed_worker`` (fast-reid's asserts CUDA). Either way each rank selects its GPU
before the process group starts, so that NCCL's first collective does not put every rank on GPU 0.
"""
from typing import Optional

import torch

__all__ = ["distributed_worker", "launch"]


def launch(main_func, num_gpus_per_machine: int, num_machines: int = 1, machine_rank: int = 0,
           dist_url: Optional[str] = None, args=(), device: Optional[str] = None):
    """``fastreid.engine.launch`` (same arguments), the backend following ``device``."""
    import torch.multiprocessing as mp
    from fastreid.engine.launch import _find_free_port

    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        return main_func(*args)
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto works on one machine only")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.spawn(distributed_worker, nprocs=num_gpus_per_machine, daemon=False,
             args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, device))


def uses_cuda(device: Optional[str], num_gpus_per_machine: int) -> bool:
    """NCCL ranks on GPUs (True) or gloo ranks (False) for ``device``, the hardware's when None."""
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cuda = visible > 0 if device is None else device.startswith("cuda")
    if cuda and visible < num_gpus_per_machine:
        raise RuntimeError(f"--num-gpus {num_gpus_per_machine} asks for more GPUs than the {visible} visible here")
    return cuda


def distributed_worker(local_rank, main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args,
                       device: Optional[str] = None):
    """One rank: its GPU selected first (CUDA), the process group (NCCL or gloo), fast-reid's local
    process group, ``main_func(*args)``, then a barrier and the groups taken down. fast-reid's
    ``launch`` calls it without ``device``."""
    import torch.distributed as dist
    from fastreid.utils import comm

    cuda = uses_cuda(device, num_gpus_per_machine)
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo", init_method=dist_url, world_size=world_size,
                            rank=machine_rank * num_gpus_per_machine + local_rank)
    comm.synchronize()

    assert comm._LOCAL_PROCESS_GROUP is None
    for i in range(world_size // num_gpus_per_machine):
        group = dist.new_group(list(range(i * num_gpus_per_machine, (i + 1) * num_gpus_per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    main_func(*args)
    # Leave together, groups taken down (torch's own clean-up): a gloo rank that exited with its
    # groups alive now and then aborted after its work was done ("terminate called without an
    # active exception", SIGABRT), which failed a finished run.
    comm.synchronize()
    dist.destroy_process_group()
