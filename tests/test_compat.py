"""One test per compat patch; each fails when its patch is removed (``compat.undo`` shows it)."""
import logging
import os
import subprocess
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import fastreid_slr
from fastreid_slr import compat
from tiny import random_batch, tiny_baseline_cfg


def _plugin_code(value) -> bool:
    """Written in this plugin (functools.wraps copies fast-reid's names, not its code)."""
    code = getattr(getattr(value, "func", value), "__code__", None)  # functions, partials
    if code is not None:
        return f"{os.sep}fastreid_slr{os.sep}" in code.co_filename
    return "fastreid_slr" in getattr(value, "__module__", "") + getattr(value, "__name__", "")


def test_every_patch_applied_once_and_idempotent():
    """Every patch ran; applying again wraps nothing twice (each recorded original is fast-reid's,
    not one of ours); undo restores fast-reid, and applying again patches it again."""
    from fastreid.engine.train_loop import AMPTrainer

    first = compat.applied_patches()
    assert set(first) == set(compat._PATCHES) and all(first.values())  # all needed on this install
    replaced = list(compat._ORIGINALS.values())
    assert compat.apply_all() == first
    assert list(compat._ORIGINALS.values()) == replaced
    for owner, name, value, _ in replaced:
        assert _plugin_code(getattr(owner, name)), (owner, name)
        assert not _plugin_code(value), f"{name}: the recorded original is one of our own wrappers"
    try:
        compat.undo()
        assert not _plugin_code(AMPTrainer.run_step)
        assert compat.applied_patches() == {}
    finally:
        compat.apply_all()
    assert _plugin_code(AMPTrainer.run_step) and compat.applied_patches() == first


def test_refuses_another_fastreid_release(monkeypatch):
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.3.0")
    with pytest.raises(RuntimeError, match="fastreid 1.4.0 .* fastreid 1.3.0 is installed"):
        compat._check_fastreid_version()


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


def test_plugin_test_loader_uses_configured_workers():
    """fast-reid's test loader always starts 4 workers; the plugin's trainers use DATALOADER.NUM_WORKERS."""
    from fastreid_slr.engine import PluginTrainer
    from tiny import tiny_slr_cfg

    cfg = tiny_slr_cfg("/tmp/unused", "/tmp/unused")
    cfg.DATALOADER.NUM_WORKERS = 0
    loader, num_query = PluginTrainer.build_test_loader(cfg, "ProceduralB")
    assert loader.num_workers == 0 and 0 < num_query < len(loader.dataset)


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
        compat.enablement._CYTHON_WARNED.clear()
        reid_evaluation.compile_helper()
    assert calls == []
    assert "Python one" in caplog.text


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


def test_regnet_and_effnet_build_from_any_working_directory(tmp_path, monkeypatch):
    """They open their YAML files by a path relative to a fast-reid checkout."""
    from fastreid.modeling.backbones import build_backbone

    monkeypatch.chdir(tmp_path)
    for name, depth in (("build_regnet_backbone", "200x"), ("build_effnet_backbone", "b0")):
        cfg = tiny_baseline_cfg()
        cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.DEPTH = name, depth
        with torch.no_grad():
            assert build_backbone(cfg).eval()(torch.rand(1, 3, 64, 32)).dim() == 4


def test_metric_printer_writes_twice_at_one_iteration():
    from fastreid.utils.events import CommonMetricPrinter, EventStorage

    printer = CommonMetricPrinter(max_iter=10)
    with EventStorage(0) as storage:
        storage.iter, storage.epoch = 1, 0
        printer.write()
        printer.write()  # without the patch: ZeroDivisionError (no "time" history yet)
        storage.iter = 2
        printer.write()
