"""Faults: every failure names its culprit, and a killed run resumes.

- checkpoints and ``last_checkpoint`` are written atomically (``SLRCheckpointer``): a run killed
  mid-save resumes from the last complete checkpoint, and no truncated file is left;
- an unreadable image names its file (``NamedFileDataset``), without hanging;
- a non-finite loss names the epoch and the iteration (``PluginTrainer``);
- a degenerate clustering stops the first epoch naming ``SLR.CLUSTER.EPS`` / ``RHO``, and a later one keeps
  the previous epoch's labels with a warning.
"""
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest
import torch

import fastreid_slr  # noqa: F401  (compat patches first)
from fastreid_slr.data.common import NamedFileDataset
from fastreid_slr.engine import PseudoLabels, SLRCheckpointer, SLRTrainer
from fastreid_slr.engine.pseudo_labels import WrappedLabeler
from tiny import REPO, tiny_slr_cfg, tiny_slr_opts


def _trainer(tmp_path, weights, trainer_cls=SLRTrainer, **opts):
    cfg = tiny_slr_cfg(tmp_path, os.path.dirname(weights), **opts)
    cfg.MODEL.WEIGHTS = weights
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=False)
    return trainer


# --------------------------------------------------------------------------- atomic checkpoints
class _Killed(BaseException):
    """Stands in for a SIGKILL in the middle of a write (BaseException: nothing catches it)."""


def _half_then_die(real_save):
    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.seek(f.tell() // 2)
        f.truncate()
        f.flush()
        raise _Killed()
    return save


def test_interrupted_checkpoint_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    checkpointer = SLRCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000")
    before = (tmp_path / "model_0000.pth").read_bytes()

    monkeypatch.setattr(torch, "save", _half_then_die(torch.save))
    with pytest.raises(_Killed):
        checkpointer.save("model_0000")  # an in-place overwrite would now be truncated
    with pytest.raises(_Killed):
        checkpointer.save("model_0001")
    monkeypatch.undo()

    assert (tmp_path / "model_0000.pth").read_bytes() == before
    assert not (tmp_path / "model_0001.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000.pth"]  # no temporary left
    assert SLRCheckpointer(torch.nn.Linear(3, 2), str(tmp_path)).get_checkpoint_file() == \
        str(tmp_path / "model_0000.pth")

    (tmp_path / ".model_0001.pth.tmp").write_bytes(b"half")  # what a SIGKILL mid-save leaves
    checkpointer.save("model_0002")
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000.pth", "model_0002.pth"]


def test_interrupted_last_checkpoint_tag_keeps_the_old_tag(tmp_path, monkeypatch):
    checkpointer = SLRCheckpointer(torch.nn.Linear(3, 2), str(tmp_path))
    checkpointer.save("model_0000")
    real_open = open

    class DyingFile:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            self.f.write(text[: len(text) // 2])
            self.f.flush()
            raise _Killed()

    def dying_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return DyingFile(f) if "last_checkpoint" in os.fspath(path) and "w" in mode else f

    monkeypatch.setattr("builtins.open", dying_open)
    with pytest.raises(_Killed):
        checkpointer.tag_last_checkpoint("model_0001.pth")
    monkeypatch.undo()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000.pth"


# --------------------------------------------------------------------------- bad images
def _iterate_with_deadline(loader, seconds=120):
    """Exhaust ``loader`` in a thread; return the exception it raised (a hang fails the test)."""
    outcome = []

    def run():
        try:
            for _ in loader:
                pass
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"the loader hung for {seconds}s instead of raising"
    return outcome[0]


@pytest.mark.parametrize("damage,num_workers", [("truncated", 0), ("truncated", 1), ("garbage", 0)])
def test_corrupt_image_error_names_the_file(tmp_path, damage, num_workers):
    from PIL import Image
    from fastreid.data import build_reid_test_loader
    from fastreid.data.transforms import build_transforms

    pixels = np.random.default_rng(0).integers(0, 256, (32, 16, 3), dtype=np.uint8)
    good = tmp_path / "0001_c1_000.png"
    Image.fromarray(pixels).save(good)
    bad = tmp_path / "0002_c1_000.png"
    if damage == "truncated":  # a valid header, half the data: PIL's error names no file
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    else:  # a PNG signature, then garbage
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    items = [(str(good), 1, 0), (str(good), 1, 0), (str(bad), 2, 0), (str(good), 1, 0)]

    cfg = tiny_slr_cfg(tmp_path / "out", tmp_path / "source")
    dataset = NamedFileDataset(items, build_transforms(cfg, is_train=False), relabel=False)
    loader, _ = build_reid_test_loader(test_set=dataset, test_batch_size=2, num_query=0,
                                       num_workers=num_workers)
    error = _iterate_with_deadline(loader)
    assert error is not None, "a corrupt image was skipped silently"
    assert str(bad) in str(error), error  # from a worker process too
    with pytest.raises(OSError, match="Cannot read image .*0002_c1_000.png"):
        dataset[2]


# --------------------------------------------------------------------------- NaN loss
def test_nan_loss_stops_naming_epoch_and_iteration(source_weights, tmp_path):
    trainer = _trainer(tmp_path, source_weights, **{"SOLVER.MAX_EPOCH": 2, "SLR.ITERS_PER_EPOCH": 2})
    model = trainer.model
    nan_at = 3  # epoch 1, its second iteration

    def poisoned(self, batched):
        losses = type(self).forward(self, batched)
        if self is model and self.training and trainer.iter == nan_at:
            name = sorted(losses)[0]
            losses = dict(losses, **{name: losses[name] * float("nan")})
        return losses

    # A bound method: copies of the model (the per-camera BN twin) get their own, unpoisoned.
    model.forward = types.MethodType(poisoned, model)
    with pytest.raises(FloatingPointError) as info:
        trainer.train()
    message = str(info.value)
    assert "epoch 1" in message and f"iteration {nan_at}" in message, message
    assert len(trainer.storage.history("total_loss").values()) == nan_at  # iterations 0..2 were fine
    assert not os.path.exists(tmp_path / "model_0001.pth")  # the poisoned epoch was never saved


# --------------------------------------------------------------------------- degenerate clustering
@pytest.mark.parametrize("opts,key", [({"SLR.CLUSTER.RHO": 0.0, "SLR.CLUSTER.EPS": 0.0001}, "SLR.CLUSTER.EPS"),
                                      ({"SLR.CLUSTER.RHO": 0.0005}, "SLR.CLUSTER.RHO")])
def test_degenerate_first_clustering_names_eps(source_weights, tmp_path, opts, key):
    trainer = _trainer(tmp_path, source_weights, **opts)
    with pytest.raises(RuntimeError) as info:
        trainer.train()
    message = str(info.value)
    assert key in message and "epoch 0" in message, message
    assert trainer.iter == 0  # it stopped before any training step


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


class _SecondClusteringAllOutliers(WrappedLabeler):
    """A labeler whose second clustering finds nothing: every image an outlier."""

    def __init__(self, labeler):
        super().__init__(labeler)
        self.calls = []

    def __call__(self, features, source_features=None):
        result = self.labeler(features, source_features)
        self.calls.append(result.labels.copy())
        if len(self.calls) == 2:
            n = len(features)
            return PseudoLabels(labels=np.full(n, -1), soft_labels=None,
                                stats=dict(result.stats, clusters_before=0, clusters_after=0,
                                           outliers_before=n, outliers_after=n))
        return result


class _DegenerateSecondEpochTrainer(SLRTrainer):
    def __init__(self, cfg):
        self.seen = []  # the labels of each epoch
        super().__init__(cfg)

    @classmethod
    def build_labeler(cls, cfg, true_ids, cameras):
        return _SecondClusteringAllOutliers(super().build_labeler(cfg, true_ids, cameras))

    def set_train_labels(self, labels, soft_labels=None, centroids=None):
        self.seen.append(labels.copy())
        super().set_train_labels(labels, soft_labels, centroids)


def test_degenerate_later_clustering_keeps_previous_labels(source_weights, tmp_path):
    records = _Records()
    hooks_logger = logging.getLogger("fastreid_slr.engine.hooks")
    hooks_logger.addHandler(records)
    try:
        trainer = _trainer(tmp_path, source_weights, trainer_cls=_DegenerateSecondEpochTrainer,
                           **{"SOLVER.MAX_EPOCH": 2})
        trainer.train()
    finally:
        hooks_logger.removeHandler(records)

    calls, seen = trainer.pseudo_label_hook.labeler.calls, trainer.seen
    assert len(calls) == 2 and len(seen) == 2
    assert np.array_equal(seen[1], seen[0])  # epoch 1 trained on epoch 0's labels
    assert np.array_equal(trainer.pseudo_label_hook.labels, calls[0])
    warnings = [m for m in records.messages if "previous epoch's pseudo-labels" in m]
    assert len(warnings) == 1 and "epoch 1" in warnings[0] and "SLR.CLUSTER.RHO" in warnings[0], records.messages


# --------------------------------------------------------------------------- kill and resume
_TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")

# Runs tools/train_net.py as __main__, with one write made to hang half-way (then the test kills
# the process): the checkpoint named by HANG_IN's torch.save, or the write of last_checkpoint.
_HANGING_WRITES = r"""
import builtins, os, runpy, sys, time
import torch
hang_in, marker = os.environ["HANG_IN"], os.environ["HANG_MARKER"]

def hang():
    open(marker, "w").close()
    time.sleep(600)

real_save = torch.save
def save(obj, f, *args, **kwargs):
    name = os.path.basename(getattr(f, "name", str(f)))
    if hang_in != "last_checkpoint" and hang_in in name:
        real_save(obj, f, *args, **kwargs)
        f.seek(f.tell() // 2)
        f.truncate()
        f.flush()
        hang()
    return real_save(obj, f, *args, **kwargs)
torch.save = save

real_open, tags = builtins.open, []
class HalfWriter:
    def __init__(self, f):
        self.f = f
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()
    def write(self, text):
        self.f.write(text[: len(text) // 2])
        self.f.flush()
        hang()
def opener(path, mode="r", *args, **kwargs):
    f = real_open(path, mode, *args, **kwargs)
    if hang_in == "last_checkpoint" and "last_checkpoint" in str(path) and "w" in mode:
        tags.append(path)
        if len(tags) == 3:  # model_0000 (best), model_0000, then this: model_best of epoch 1
            return HalfWriter(f)
    return f
builtins.open = opener

sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _tiny_opts(weights, output_dir, max_epoch=3):
    return tiny_slr_opts(**{"SOLVER.MAX_EPOCH": max_epoch, "TEST.EVAL_PERIOD": 1, "SOLVER.CHECKPOINT_PERIOD": 1,
                            "SLR.SOURCE.WEIGHTS": weights, "OUTPUT_DIR": str(output_dir)})


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _command(opts, *flags, prefix=()):
    return [sys.executable, *prefix, _TRAIN_NET, "--config-file",
            os.path.join(REPO, "configs", "Demo", "slr-procedural.yml"), *flags, *opts]


def _kill_when(process, condition, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended (rc {process.returncode}) before the kill"
        assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(30)


def _assert_checkpoints_intact(output_dir):
    """``last_checkpoint`` names an existing checkpoint, and every checkpoint loads."""
    tag = (output_dir / "last_checkpoint").read_text()
    assert (output_dir / tag).is_file(), f"last_checkpoint names {tag!r}"
    for path in output_dir.glob("*.pth"):
        torch.load(path, map_location="cpu", weights_only=True)  # a truncated file raises


def _tag_epoch(output_dir):
    tag = (output_dir / "last_checkpoint").read_text()
    return torch.load(output_dir / tag, map_location="cpu", weights_only=True)["epoch"]


def _resume(opts, output_dir):
    log = output_dir / "resume.log"
    with open(log, "w") as out:
        rc = subprocess.run(_command(opts, "--resume"), env=_env(), stdout=out, stderr=subprocess.STDOUT,
                            timeout=600).returncode
    text = log.read_text()
    assert rc == 0, text[-3000:]
    return text


@pytest.mark.slow
def test_sigkill_during_training_then_resume_completes(source_weights, tmp_path):
    opts = _tiny_opts(source_weights, tmp_path)
    with open(tmp_path / "killed.log", "w") as out:
        process = subprocess.Popen(_command(opts), env=_env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            # Kill in epoch 1, after its pseudo-labels (so after epoch 0's checkpoint).
            _kill_when(process, lambda: (tmp_path / "killed.log").read_text().count("Pseudo-labels:") >= 2)
        finally:
            process.kill()
    assert not (tmp_path / "model_final.pth").exists()
    _assert_checkpoints_intact(tmp_path)
    saved = _tag_epoch(tmp_path)
    text = _resume(opts, tmp_path)
    assert f"Starting training from epoch {saved + 1}" in text  # at most the current epoch was lost
    assert (tmp_path / "model_final.pth").is_file() and (tmp_path / "final_results.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("hang_in", ["model_0001", "last_checkpoint"])
def test_sigkill_during_checkpoint_write_then_resume_completes(source_weights, tmp_path, hang_in):
    opts = _tiny_opts(source_weights, tmp_path)
    marker = tmp_path / "hanging"
    env = dict(_env(), HANG_IN=hang_in, HANG_MARKER=str(marker))
    with open(tmp_path / "killed.log", "w") as out:
        process = subprocess.Popen(_command(opts, prefix=("-c", _HANGING_WRITES)), env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
        try:
            _kill_when(process, marker.exists)
        finally:
            process.kill()
    # Killed in epoch 1's checkpointing: resumes from epoch 0's checkpoint, or from epoch 1's
    # model_best when that was complete before the hanging write.
    _assert_checkpoints_intact(tmp_path)
    if hang_in == "last_checkpoint":
        assert (tmp_path / "last_checkpoint").read_text() == "model_0000.pth"
    saved = _tag_epoch(tmp_path)
    assert saved in (0, 1)
    text = _resume(opts, tmp_path)
    assert f"Starting training from epoch {saved + 1}" in text
    _assert_checkpoints_intact(tmp_path)
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert not list(tmp_path.glob(".*.tmp"))  # the killed run's temporary was cleaned up
