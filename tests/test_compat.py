"""One test per compat patch; each fails when its patch is removed."""
import logging
import os
import pickle
import re
import subprocess
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import fastreid_slr
from fastreid_slr import compat
from tiny import random_batch, tiny_baseline_cfg


def test_every_patch_applied_once_and_idempotent():
    first = compat.applied_patches()
    assert set(first) == set(compat._PATCHES)
    assert compat.apply_all() == first  # a second call changes nothing


def test_torch_six_and_collections_mapping():
    import fastreid.data.build as build
    import fastreid.evaluation.testing  # noqa: F401  (imports collections.Mapping)

    batch = build.fast_batch_collator([{"img_paths": "a.png", "targets": 1},
                                       {"img_paths": "b.png", "targets": 2}])
    assert batch["img_paths"] == ["a.png", "b.png"]
    assert batch["targets"].tolist() == [1, 2]


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, n, fail_at=None):
        self.n, self.fail_at = n, fail_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise OSError(f"cannot read image {i}")
        return {"images": torch.full((3, 4, 2), float(i)), "targets": i}


def _loader(dataset, batch_size=2):
    from fastreid.data.build import DataLoaderX, fast_batch_collator

    sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(dataset), batch_size, False)
    return DataLoaderX(0, dataset=dataset, batch_sampler=sampler, collate_fn=fast_batch_collator,
                       num_workers=0, pin_memory=True)


def test_dataloader_runs_on_cpu():
    batches = list(_loader(_ListDataset(6)))
    assert [b["targets"].tolist() for b in batches] == [[0, 1], [2, 3], [4, 5]]
    assert batches[0]["images"].device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_prefetch_thread_crash_surfaces_instead_of_hanging():
    outcome = {}

    def consume():
        try:
            list(_loader(_ListDataset(8, fail_at=5)))
        except OSError as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the loader hung after an error in its prefetch thread"
    assert outcome.get("error") == "cannot read image 5"


def test_test_loader_uses_configured_workers():
    from fastreid.data import build_reid_test_loader
    from fastreid.data.common import CommDataset

    cfg = tiny_baseline_cfg()
    cfg.DATALOADER.NUM_WORKERS = 0
    test_set = CommDataset([("x.png", 0, 0)], transform=None, relabel=False)
    loader, num_query = build_reid_test_loader(cfg, test_set=test_set, num_query=1)
    assert loader.num_workers == 0 and num_query == 1


def test_random_affine_builds():
    import torchvision.transforms as T
    from fastreid.data.transforms import build_transforms

    cfg = tiny_baseline_cfg()
    cfg.INPUT.AFFINE.ENABLED = True
    transforms = build_transforms(cfg, is_train=True)
    assert any(isinstance(t, T.RandomAffine) for t in transforms.transforms)
    assert T.RandomAffine.__name__ == "RandomAffine"  # torchvision itself untouched


@pytest.mark.parametrize("mode,dtype", [("1", torch.float32), ("I", torch.int32), ("F", torch.float32)])
def test_to_tensor_numpy2(mode, dtype):
    from fastreid.data.transforms.transforms import ToTensor

    image = Image.new(mode, (5, 3), color=1)
    tensor = ToTensor()(image)
    assert tensor.shape == (1, 3, 5) and tensor.dtype == dtype
    assert tensor.max().item() == (255 if mode == "1" else 1)


def _train_steps(cfg, steps, amp=False):
    from fastreid.engine import DefaultTrainer
    from fastreid.engine.train_loop import AMPTrainer, SimpleTrainer

    torch.manual_seed(0)
    model = DefaultTrainer.build_model(cfg)
    optimizer, param_wrapper = DefaultTrainer.build_optimizer(cfg, model)
    loader = iter([random_batch(seed=i) for i in range(steps)])
    trainer = (AMPTrainer if amp else SimpleTrainer)(model, loader, optimizer, param_wrapper)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    from fastreid.utils.events import EventStorage

    with EventStorage(0):
        for it in range(steps):
            trainer.iter = it
            trainer.run_step()
    changed = [k for k, v in model.named_parameters() if not torch.equal(before[k], v.detach())]
    return changed, len(before)


def test_baseline_step_changes_parameters():
    """ContiguousParams + torch 2's zero_grad(set_to_none=True) silently stop all learning."""
    changed, total = _train_steps(tiny_baseline_cfg(num_classes=4), steps=2)
    assert len(changed) > 0.9 * total


def test_amp_trainer_on_cpu():
    changed, total = _train_steps(tiny_baseline_cfg(num_classes=4), steps=1, amp=True)
    assert len(changed) > 0.9 * total


def test_ddp_wrapper_accepts_cpu_model(tmp_path):
    import torch.distributed as dist
    import fastreid.engine.defaults as defaults

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        wrapped = defaults.DistributedDataParallel(torch.nn.Linear(2, 2), device_ids=[0],
                                                   broadcast_buffers=False)
        assert wrapped(torch.ones(1, 2)).shape == (1, 2)
    finally:
        dist.destroy_process_group()


def _report_backend(path):
    import torch.distributed as dist
    from fastreid.utils import comm

    with open(os.path.join(path, f"rank{comm.get_rank()}"), "w") as f:
        f.write(f"{dist.get_backend()} {comm.get_world_size()}")


def test_launch_two_cpu_processes(tmp_path):
    from fastreid.engine import launch

    launch(_report_backend, 2, dist_url="auto", args=(str(tmp_path),))
    reports = sorted(p.read_text() for p in tmp_path.iterdir())
    expected = "nccl" if torch.cuda.device_count() >= 2 else "gloo"
    assert reports == [f"{expected} 2", f"{expected} 2"]


def test_evaluator_never_runs_make_or_exits(monkeypatch, caplog):
    import fastreid.evaluation.reid_evaluation as reid_evaluation

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    with caplog.at_level(logging.WARNING):
        compat._CYTHON_WARNED.clear()
        reid_evaluation.compile_helper()
    assert calls == []
    assert "Python one" in caplog.text


def test_jaccard_runs_on_cpu():
    from fastreid.utils.compute_dist import compute_jaccard_distance

    features = torch.nn.functional.normalize(torch.randn(40, 8), dim=1)
    dist = compute_jaccard_distance(features, k1=6, k2=2)
    assert dist.shape == (40, 40)
    assert np.allclose(np.diag(dist), 0, atol=1e-6) and (dist >= 0).all() and (dist <= 1).all()


def _checkpointer(cfg, save_dir):
    from fastreid.engine import DefaultTrainer
    from fastreid.utils.checkpoint import Checkpointer

    model = DefaultTrainer.build_model(cfg)
    optimizer, _ = DefaultTrainer.build_optimizer(cfg, model)
    schedulers = DefaultTrainer.build_lr_scheduler(cfg, optimizer, iters_per_epoch=10)
    return model, Checkpointer(model, str(save_dir), optimizer=optimizer, **schedulers)


def test_checkpoint_resume_with_weights_only(tmp_path):
    cfg = tiny_baseline_cfg(num_classes=4)
    cfg.SOLVER.WARMUP_ITERS = 5  # a warm-up scheduler and a MultiStepLR (Counter milestones)
    model, checkpointer = _checkpointer(cfg, tmp_path)
    checkpointer.save("model_0001", epoch=1)
    torch.load(tmp_path / "model_0001.pth", weights_only=True)  # safe loading, no exception

    fresh, fresh_checkpointer = _checkpointer(cfg, tmp_path)
    state = fresh_checkpointer.resume_or_load("", resume=True)
    assert state["epoch"] == 1
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


class _Exploit:
    def __reduce__(self):
        return (os.getcwd, ())  # harmless, but code that runs on load


def test_crafted_checkpoint_is_refused(tmp_path, monkeypatch):
    from fastreid.utils.checkpoint import Checkpointer

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch's default turned unsafe
    path = tmp_path / "evil.pth"
    torch.save({"model": _Exploit()}, path)
    with pytest.raises(compat.UnreadableCheckpoint, match="evil.pth: UnpicklingError") as info:
        Checkpointer(torch.nn.Linear(1, 1))._load_file(str(path))
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)


def test_truncated_checkpoint_error_names_the_file(tmp_path):
    """torch's own error ("PytorchStreamReader failed reading zip archive") names no file."""
    from fastreid.utils.checkpoint import Checkpointer

    Checkpointer(torch.nn.Linear(3, 2), str(tmp_path)).save("model_0003")
    path = tmp_path / "model_0003.pth"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(compat.UnreadableCheckpoint, match=re.escape(f"Cannot load checkpoint {path}: RuntimeError")):
        Checkpointer(torch.nn.Linear(3, 2)).load(str(path))


def test_pretrained_weights_offline_fail_fast_then_load(tmp_path, monkeypatch):
    from fastreid.engine import DefaultTrainer
    from fastreid.modeling.backbones.resnet import model_urls

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = tiny_baseline_cfg()
    cfg.MODEL.BACKBONE.PRETRAIN = True
    expected = tmp_path / "checkpoints" / model_urls["18x"].split("/")[-1]
    with pytest.raises(FileNotFoundError) as info:
        DefaultTrainer.build_model(cfg)
    assert str(expected) in str(info.value) and model_urls["18x"] in str(info.value)

    # Placing the file where the message says makes it load.
    donor = DefaultTrainer.build_model(tiny_baseline_cfg()).backbone
    expected.parent.mkdir(parents=True)
    torch.save({k: torch.full_like(v, 0.5) for k, v in donor.state_dict().items()}, expected)
    model = DefaultTrainer.build_model(cfg)
    assert torch.all(model.backbone.conv1.weight == 0.5)


@pytest.mark.parametrize("name", ["Market1501", "DukeMTMC", "PersonX"])
def test_missing_dataset_names_path_and_env(name, tmp_path):
    from fastreid.data.datasets import DATASET_REGISTRY

    with pytest.raises(FileNotFoundError) as info:
        DATASET_REGISTRY.get(name)(root=str(tmp_path))
    message = str(info.value)
    assert name in message and str(tmp_path) in message and "FASTREID_DATASETS" in message


def test_metric_printer_writes_twice_at_one_iteration():
    from fastreid.utils.events import CommonMetricPrinter, EventStorage

    printer = CommonMetricPrinter(max_iter=10)
    with EventStorage(0) as storage:
        storage.iter, storage.epoch = 1, 0
        printer.write()
        printer.write()  # without the patch: ZeroDivisionError (no "time" history yet)
        storage.iter = 2
        printer.write()
