"""Each break of ``fastreid_slr.compat``: what fast-reid does without its fix on this installation
(the failure, where fast-reid fails here), what it does with it, and the patch undone and applied
again alone. Importing the plugin applies these and nothing else."""
import os
import re
import subprocess
import sys
import threading
from typing import Callable, NamedTuple, Optional, Tuple, Type

import pytest
import torch
import torch.distributed as dist
from PIL import Image

from fastreid_slr import compat
from tiny import REPO, random_batch, tiny_baseline_cfg

CUDA = torch.cuda.is_available()


def _plugin_code(value) -> bool:
    """Written in this plugin (functools.wraps copies fast-reid's names, not its code)."""
    code = getattr(getattr(value, "func", value), "__code__", None)  # functions, partials
    if code is not None:
        return f"{os.sep}fastreid_slr{os.sep}" in code.co_filename
    return "fastreid_slr" in getattr(value, "__module__", "") + getattr(value, "__name__", "")


# --------------------------------------------------------------------------- what each fix makes work
def _collates_strings(tmp_path, monkeypatch):
    from fastreid.data.build import fast_batch_collator  # its string check: torch._six.string_classes
    from fastreid.evaluation.testing import flatten_results_dict  # collections.Mapping

    batch = fast_batch_collator([{"img_paths": "a.png", "targets": 1}, {"img_paths": "b.png", "targets": 2}])
    assert batch["img_paths"] == ["a.png", "b.png"] and batch["targets"].tolist() == [1, 2]
    assert flatten_results_dict({"A": {"mAP": 1.0}}) == {"A/mAP": 1.0}


def _random_affine(tmp_path, monkeypatch):
    import torchvision.transforms as T
    from fastreid.data.transforms import build_transforms

    cfg = tiny_baseline_cfg()
    cfg.INPUT.AFFINE.ENABLED = True
    transforms = build_transforms(cfg, is_train=True)
    assert any(isinstance(t, T.RandomAffine) for t in transforms.transforms)
    assert T.RandomAffine.__name__ == "RandomAffine"  # torchvision itself untouched


def _to_tensor(tmp_path, monkeypatch):
    from fastreid.data.transforms.transforms import ToTensor

    for mode, dtype in (("1", torch.float32), ("I", torch.int32), ("F", torch.float32)):
        tensor = ToTensor()(Image.new(mode, (5, 3), color=1))
        assert tensor.shape == (1, 3, 5) and tensor.dtype == dtype
        assert tensor.max().item() == (255 if mode == "1" else 1)


def _baseline_learns(tmp_path, monkeypatch):
    from fastreid.engine import DefaultTrainer
    from fastreid.engine.train_loop import SimpleTrainer
    from fastreid.utils.events import EventStorage

    cfg = tiny_baseline_cfg(num_classes=4)
    model = DefaultTrainer.build_model(cfg)
    optimizer, param_wrapper = DefaultTrainer.build_optimizer(cfg, model)
    trainer = SimpleTrainer(model, iter([random_batch(seed=i) for i in range(2)]), optimizer, param_wrapper)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    with EventStorage(0):
        for it in range(2):
            trainer.iter = it
            trainer.run_step()
    changed = sum(not torch.equal(before[k], v.detach()) for k, v in model.named_parameters())
    assert changed > 0.9 * len(before), f"the optimiser moved {changed} of {len(before)} parameters"


class _Items(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 5:
            raise OSError("cannot read image 5")
        return {"images": torch.full((3, 4, 2), float(i)), "targets": i}


def _loader_reports_errors(tmp_path, monkeypatch):
    """Batches on the process's device; an error in the prefetch thread reaches the consumer."""
    from fastreid.data.build import DataLoaderX, fast_batch_collator

    outcome = {}

    def consume():
        try:
            sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(_Items()), 2, False)
            loader = DataLoaderX(0, dataset=_Items(), batch_sampler=sampler, collate_fn=fast_batch_collator,
                                 num_workers=0, pin_memory=True)
            outcome["batches"] = [next(iter(loader))]
            list(loader)
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the loader hung after an error in its prefetch thread"
    if not isinstance(outcome["error"], OSError):
        raise outcome["error"]
    assert str(outcome["error"]) == "cannot read image 5"
    first = outcome["batches"][0]
    assert first["targets"].tolist() == [0, 1] and first["images"].device.type == ("cuda" if CUDA else "cpu")


def _ddp_wraps_a_cpu_model(tmp_path, monkeypatch):
    import fastreid.engine.defaults as defaults

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'ddp'}", rank=0, world_size=1)
    try:
        wrapped = defaults.DistributedDataParallel(torch.nn.Linear(2, 2), device_ids=[0], broadcast_buffers=False)
        assert wrapped(torch.ones(1, 2)).shape == (1, 2) and not wrapped.find_unused_parameters
    finally:
        dist.destroy_process_group()


def _launched_rank(tmp_path, monkeypatch):
    """fast-reid's worker of ``launch`` starts a rank: NCCL where CUDA is, gloo elsewhere."""
    import importlib

    from fastreid.utils import comm

    monkeypatch.setattr(comm, "_LOCAL_PROCESS_GROUP", None)
    seen = []
    worker = importlib.import_module("fastreid.engine.launch")._distributed_worker
    try:
        worker(0, lambda: seen.append(dist.get_backend()), 1, 1, 0, f"file://{tmp_path / 'launch'}", ())
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert seen == ["nccl" if CUDA else "gloo"]


def _regnet_from_anywhere(tmp_path, monkeypatch):
    from fastreid.modeling.backbones import build_backbone

    monkeypatch.chdir(tmp_path)  # not a fast-reid checkout
    for name, depth in (("build_regnet_backbone", "200x"), ("build_effnet_backbone", "b0")):
        cfg = tiny_baseline_cfg()
        cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.DEPTH = name, depth
        with torch.no_grad():
            assert build_backbone(cfg).eval()(torch.rand(1, 3, 64, 32)).dim() == 4


def _resnet18_pretrained(torch_home, monkeypatch):
    """fast-reid's ResNet-18 with MODEL.BACKBONE.PRETRAIN, its cache in ``torch_home``."""
    from fastreid.modeling.backbones import build_backbone

    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    cfg = tiny_baseline_cfg()
    cfg.MODEL.BACKBONE.PRETRAIN = True
    return build_backbone(cfg)


def _weights_from_the_cache_without_gdown(tmp_path, monkeypatch):
    from fastreid.modeling.backbones.resnet import model_urls

    monkeypatch.setitem(sys.modules, "gdown", None)  # not installed (fastreid 1.4.0 does not declare it)
    path = tmp_path / "checkpoints" / model_urls["18x"].split("/")[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: torch.full_like(v, 0.5) for k, v in _plain_resnet18().state_dict().items()}, path)
    assert torch.all(_resnet18_pretrained(tmp_path, monkeypatch).conv1.weight == 0.5)


def _plain_resnet18():
    from fastreid.modeling.backbones import build_backbone

    return build_backbone(tiny_baseline_cfg())


class Break(NamedTuple):
    works: Callable  # (tmp_path, monkeypatch): runs fast-reid's code, asserts it works
    failure: Optional[Tuple[Type[BaseException], str]]  # what it raises without the fix here; None: it works here


_NO_CUDA = "fast-reid's code works where CUDA is"
BREAKS = {
    "torch_six": Break(_collates_strings, (ModuleNotFoundError, r"No module named 'torch\._six'")),
    "collections_abc_aliases": Break(_collates_strings, (ImportError, r"cannot import name 'Mapping' from 'collections'")),
    "random_affine_kwargs": Break(_random_affine, (TypeError, "unexpected keyword argument 'resample'")),
    "to_tensor_numpy2": Break(_to_tensor, (ValueError, "Unable to avoid copy")),
    "no_contiguous_params": Break(_baseline_learns, (AssertionError, "the optimiser moved 0 of")),
    "cpu_safe_dataloader": Break(_loader_reports_errors, (AssertionError, "hung") if CUDA else (RuntimeError, "NVIDIA driver")),
    "launch_without_cuda": Break(_launched_rank, None if CUDA else (AssertionError, "cuda is not available")),
    "ddp_cpu_device_ids": Break(_ddp_wraps_a_cpu_model, (ValueError, r"device_ids \[0\]")),
    "backbone_config_paths": Break(_regnet_from_anywhere, (FileNotFoundError, "RegNetX-200MF")),
    "imagenet_weights_local_first": Break(_weights_from_the_cache_without_gdown, (ModuleNotFoundError, "gdown")),
}
# Import-time shims: without them fast-reid's modules do not import, which only a fresh process shows.
IMPORT_SHIMS = ("torch_six", "collections_abc_aliases")


def test_every_break_has_its_case_here():
    assert set(BREAKS) == set(compat._PATCHES)


@pytest.mark.parametrize("name", list(BREAKS))
def test_fixed(name, tmp_path, monkeypatch):
    BREAKS[name].works(tmp_path, monkeypatch)


@pytest.mark.parametrize("name", list(BREAKS))
def test_fails_without_its_fix(name, tmp_path, monkeypatch):
    case = BREAKS[name]
    if not compat.applied_patches()[name]:
        pytest.skip(f"{name} changed nothing on this installation: fast-reid works here as it is")
    if case.failure is None:
        pytest.skip(_NO_CUDA)
    error, message = case.failure
    if name in IMPORT_SHIMS:
        others = ",".join(n for n in IMPORT_SHIMS if n != name)
        done = subprocess.run([sys.executable, os.path.join(REPO, "tests", "breaks_only.py"), "--patches", others,
                               "-c", "import fastreid.data.build, fastreid.evaluation.testing"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and re.search(f"{error.__name__}: {message}", done.stderr), done.stderr[-2000:]
        return
    without, again = tmp_path / "without", tmp_path / "again"
    without.mkdir()
    again.mkdir()
    compat.undo(name)
    try:
        with pytest.raises(error, match=message):
            case.works(without, monkeypatch)
    finally:
        compat.apply_all()
    case.works(again, monkeypatch)  # applied again, it works again


@pytest.mark.parametrize("name", list(BREAKS))
def test_undo_restores_fastreid_for_that_patch_only(name):
    replaced = compat.replaced(name)
    assert bool(replaced) == compat.applied_patches()[name]
    others = [(o, a, compat._get(o, a)) for n in compat._PATCHES if n != name for o, a, _ in compat.replaced(n)]
    compat.undo(name)
    try:
        assert name not in compat.applied_patches()
        for owner, attribute, original in replaced:  # (== : a bound method is a new object per lookup)
            assert compat._get(owner, attribute) == original, attribute
            assert original is compat._MISSING or not _plugin_code(original), f"{attribute}: not fast-reid's"
        assert all(compat._get(o, a) == value for o, a, value in others), "undo touched another patch"
    finally:
        compat.apply_all(name)
    assert all(compat._get(owner, attribute) != original for owner, attribute, original in replaced)


def test_import_applies_the_breaks_and_nothing_else():
    """fast-reid's behaviour that is no break stays fast-reid's: the plugin's choices live in its
    own classes (fastreid_slr.engine.fastreid_subclasses)."""
    from fastreid.engine.train_loop import AMPTrainer
    from fastreid.evaluation import reid_evaluation
    from fastreid.utils.events import CommonMetricPrinter

    assert set(compat.applied_patches()) == set(compat._PATCHES)
    assert {r.patch for r in compat._REPLACEMENTS} <= set(compat._PATCHES)
    for fastreid_own in (AMPTrainer.run_step, reid_evaluation.compile_helper, CommonMetricPrinter.write,
                         reid_evaluation.ReidEvaluator._compile_dependencies):
        assert not _plugin_code(fastreid_own), fastreid_own


def test_apply_all_is_idempotent():
    first = compat.applied_patches()
    replaced = list(compat._REPLACEMENTS)
    assert compat.apply_all() == first
    assert compat._REPLACEMENTS == replaced
    for entry in replaced:  # every recorded original is fast-reid's, never one of ours
        assert entry.original is compat._MISSING or not _plugin_code(entry.original), entry.name


def test_the_docs_list_every_break():
    with open(os.path.join(REPO, "docs", "compat.md")) as f:
        page = f.read()
    section = page[page.index("## fast-reid 1.4.0 on today's torch"):]
    section = section[:section.index("\n## ", 1)]
    listed = set(re.findall(r"^\| `(\w+)`", section, flags=re.M))
    assert listed == set(compat._PATCHES)


def test_refuses_another_fastreid_release(monkeypatch):
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.3.0")
    with pytest.raises(RuntimeError, match="fastreid 1.4.0 .* fastreid 1.3.0 is installed"):
        compat._check_fastreid_version()


# --------------------------------------------------------------------------- the ImageNet-weights rule
class _FakeGdown:
    """fast-reid's download step: ``gdown.download(url, path)``, recorded, failing or writing ``weights``."""

    def __init__(self, weights=None):
        self.weights, self.calls = weights, []

    def download(self, url, output, quiet=False):
        self.calls.append(url)
        if self.weights is None:
            raise ConnectionError("network is unreachable")
        torch.save(self.weights, output)
        return output


def test_weights_downloaded_by_fastreid_when_not_cached(tmp_path, monkeypatch):
    from fastreid.modeling.backbones.resnet import model_urls

    gdown = _FakeGdown({k: torch.full_like(v, 0.25) for k, v in _plain_resnet18().state_dict().items()})
    monkeypatch.setitem(sys.modules, "gdown", gdown)
    assert torch.all(_resnet18_pretrained(tmp_path, monkeypatch).conv1.weight == 0.25)
    assert gdown.calls == [model_urls["18x"]]
    assert (tmp_path / "checkpoints" / model_urls["18x"].split("/")[-1]).is_file()  # cached by fast-reid


def test_weights_neither_cached_nor_downloadable_one_message_names_both(tmp_path, monkeypatch):
    from fastreid.modeling.backbones.resnet import model_urls

    monkeypatch.setitem(sys.modules, "gdown", _FakeGdown())
    with pytest.raises(FileNotFoundError) as info:
        _resnet18_pretrained(tmp_path, monkeypatch)
    message = str(info.value)
    cached = tmp_path / "checkpoints" / model_urls["18x"].split("/")[-1]
    assert str(cached) in message and "MODEL.BACKBONE.PRETRAIN_PATH" in message  # the local file
    assert model_urls["18x"] in message and "ConnectionError: network is unreachable" in message  # the download


def test_cached_pycls_weights_are_unpacked_as_fastreid_does(tmp_path, monkeypatch):
    """Each loader's own unpacking: RegNet and EfficientNet files hold ``{"model_state": ...}``."""
    from fastreid.modeling.backbones import build_backbone
    from fastreid.modeling.backbones.regnet.effnet import model_urls

    monkeypatch.setitem(sys.modules, "gdown", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = tiny_baseline_cfg()
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.DEPTH = "build_effnet_backbone", "b0"
    donor = {k: v for k, v in build_backbone(cfg).state_dict().items() if v.is_floating_point()}
    path = tmp_path / "checkpoints" / model_urls["b0"].split("/")[-1]
    path.parent.mkdir()
    torch.save({"model_state": {k: torch.full_like(v, 0.5) for k, v in donor.items()}}, path)
    cfg.MODEL.BACKBONE.PRETRAIN = True
    loaded = build_backbone(cfg).state_dict()
    assert all(torch.all(loaded[k] == 0.5) for k in donor)
