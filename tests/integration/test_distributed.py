"""Several ranks without hangs (CPU, gloo): object broadcasts off the NCCL group, the launch backend
following the device its caller passes (the hardware without one), the per-rank batch refused at
start-up, DDP with parameters left unused."""
import json
import os

import pytest
import torch
import torch.distributed as dist
from fastreid.engine import default_argument_parser, launch
from fastreid.utils import comm

from fastreid_slr import add_slr_config
from fastreid_slr.engine import check_batch_per_rank
from fastreid_slr.launch import distributed_worker
from fastreid_slr.utils import distributed_data_parallel
from fastreid_slr import run
from tiny import PROCEDURAL, REPO

DEMO = os.path.join(REPO, "configs", "Demo", "slr-procedural.yml")
D2M = os.path.join(REPO, "configs", "SLR", "d2m.yml")


# --------------------------------------------------------------------------- labels broadcast
def _broadcast_with_nccl_default(path):
    """In a launched rank: make the default group look like NCCL (as on GPUs), broadcast as the
    pseudo-label hook does, and record which group carried it."""
    from fastreid_slr.engine import hooks

    real_get_backend, world = dist.get_backend, dist.group.WORLD
    dist.get_backend = lambda group=None: "nccl" if group in (None, world) else real_get_backend(group)
    comm._get_global_gloo_group.cache_clear()
    groups, real_broadcast = [], dist.broadcast_object_list

    def spy(objects, src=0, group=None, **kwargs):
        groups.append(group)
        return real_broadcast(objects, src=src, group=group, **kwargs)

    dist.broadcast_object_list = spy
    received = hooks._broadcast_from_main({"from": comm.get_rank()})
    with open(os.path.join(path, f"rank{comm.get_rank()}.json"), "w") as f:
        json.dump({"received": received, "calls": len(groups), "default_group": groups[0] in (None, world),
                   "backend": real_get_backend(groups[0])}, f)


def test_pseudo_label_broadcast_goes_over_gloo_not_the_default_group(tmp_path):
    launch(_broadcast_with_nccl_default, 2, dist_url="auto", args=(str(tmp_path),))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for record in ranks:
        assert record["received"] == {"from": 0}
        assert record["calls"] == 1 and not record["default_group"]
        assert record["backend"] == "gloo"


# --------------------------------------------------------------------------- launch backend
@pytest.fixture
def fake_two_gpus(monkeypatch):
    """CUDA that reports two GPUs; process-group set-up, barriers and take-down recorded instead of
    performed."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kwargs: calls.append(("init", backend)))
    monkeypatch.setattr(dist, "new_group", lambda ranks: "local group")
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append(("destroy",)))
    monkeypatch.setattr(comm, "synchronize", lambda: calls.append(("synchronize",)))
    monkeypatch.setattr(comm, "_LOCAL_PROCESS_GROUP", None)
    return calls


# After its group starts, a rank waits for the others, runs, and leaves with them, its groups taken down.
RUN_AND_LEAVE = [("synchronize",), ("main",), ("synchronize",), ("destroy",)]


def _worker(calls, device, num_gpus=2):
    distributed_worker(1, lambda: calls.append(("main",)), num_gpus, num_gpus, 0, "tcp://127.0.0.1:1", (), device)


def test_cpu_run_gets_gloo_on_a_gpu_host(fake_two_gpus):
    _worker(fake_two_gpus, "cpu")
    assert fake_two_gpus == [("init", "gloo"), *RUN_AND_LEAVE]


def test_cuda_run_selects_its_gpu_before_nccl_starts(fake_two_gpus):
    _worker(fake_two_gpus, "cuda")
    assert fake_two_gpus == [("set_device", 1), ("init", "nccl"), *RUN_AND_LEAVE]


def test_without_a_device_the_hardware_decides(fake_two_gpus, monkeypatch):
    _worker(fake_two_gpus, None)  # fast-reid's own launch: no device
    assert fake_two_gpus == [("set_device", 1), ("init", "nccl"), *RUN_AND_LEAVE]
    fake_two_gpus.clear()
    monkeypatch.setattr(comm, "_LOCAL_PROCESS_GROUP", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _worker(fake_two_gpus, None)
    assert fake_two_gpus == [("init", "gloo"), *RUN_AND_LEAVE]


def test_more_ranks_than_gpus_is_refused(fake_two_gpus):
    with pytest.raises(RuntimeError, match="--num-gpus 4 asks for more GPUs than the 2 visible"):
        _worker(fake_two_gpus, "cuda", num_gpus=4)
    assert fake_two_gpus == []


def test_train_net_launches_on_the_device_of_its_merged_config(monkeypatch):
    """tools/train_net.py passes the device of the config it merged (CPU when CUDA is asked for and
    absent); the launch itself never reads a config."""
    args = default_argument_parser().parse_args(["--config-file", D2M])  # MODEL.DEVICE cuda
    assert run.run_device(run.load_config(args)) == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert run.run_device(run.load_config(args)) == "cuda"
    args = default_argument_parser().parse_args(["--config-file", DEMO])  # MODEL.DEVICE cpu
    assert run.run_device(run.load_config(args, (PROCEDURAL,))) == "cpu"


# --------------------------------------------------------------------------- batch per rank
def _paper_cfg(tmp_path, *opts):
    from fastreid.config import get_cfg

    cfg = add_slr_config(get_cfg())
    cfg.merge_from_file(D2M)
    cfg.merge_from_list(["SLR.SOURCE.OUTPUT_DIR", str(tmp_path), *opts])  # no stage-1 weights there
    return cfg


def test_paper_batch_on_four_gpus_is_refused_naming_the_fix(tmp_path):
    cfg = _paper_cfg(tmp_path)
    check_batch_per_rank(cfg, 2)  # 8 per rank = two identities of 4
    with pytest.raises(ValueError) as info:
        check_batch_per_rank(cfg, 4)
    message = str(info.value)
    assert "SOLVER.IMS_PER_BATCH 16" in message and "4 rank(s) each gets 4 images" in message
    assert "Set SOLVER.IMS_PER_BATCH to 32 or more" in message
    with pytest.raises(ValueError, match="SOLVER.IMS_PER_BATCH to 64 or more"):
        check_batch_per_rank(cfg, 8)  # fast-reid's sampler would loop forever on 2 images per rank


def test_stage_one_batch_is_checked_only_when_stage_one_will_run(tmp_path):
    cfg = _paper_cfg(tmp_path, "SOLVER.IMS_PER_BATCH", "64")
    with pytest.raises(ValueError, match="SLR.SOURCE.IMS_PER_BATCH 16 .* Set SLR.SOURCE.IMS_PER_BATCH to 32"):
        check_batch_per_rank(cfg, 4)
    (tmp_path / "model_final.pth").write_bytes(b"stage 1 done")
    check_batch_per_rank(cfg, 4)
    cfg.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"  # no identities per batch to run short of
    cfg.SOLVER.IMS_PER_BATCH = 4
    check_batch_per_rank(cfg, 4)


def test_train_net_refuses_at_start_up(tmp_path, monkeypatch):
    monkeypatch.setattr(comm, "get_world_size", lambda: 8)
    args = run.argument_parser().parse_args(["--config-file", DEMO, "OUTPUT_DIR", str(tmp_path / "run"),
                                             "SLR.SOURCE.OUTPUT_DIR", str(tmp_path / "source")])
    with pytest.raises(ValueError, match="over 8 rank"):
        run.setup(args, (PROCEDURAL,))


# --------------------------------------------------------------------------- unused parameters
class _HalfUsed(torch.nn.Module):
    """Like SLR with λ1 = λ2 = 0: part of the parameters never reaches the loss."""

    leaves_parameters_unused = True

    def __init__(self):
        super().__init__()
        self.used, self.unused = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.used(x).sum()


def _ddp_steps(path):
    torch.manual_seed(0)
    model = distributed_data_parallel(_HalfUsed(), device_ids=[comm.get_local_rank()], broadcast_buffers=False)
    for _ in range(3):  # without the search, the second forward raises
        model(torch.ones(2, 4)).backward()
    with open(os.path.join(path, f"rank{comm.get_rank()}"), "w") as f:
        f.write(f"{model.find_unused_parameters} {float(model.module.used.weight.grad.sum()):.1f}")


def test_ddp_searches_unused_parameters_when_the_model_says_so(tmp_path):
    launch(_ddp_steps, 2, dist_url="auto", args=(str(tmp_path),))
    zero, one = ((tmp_path / f"rank{r}").read_text().split() for r in (0, 1))
    assert zero[0] == one[0] == "True"
    assert zero[1] == one[1] != "0.0"  # the used parameters were trained, identically on both ranks
