"""Checkpoints on a finite disk: the newest SLR.CHECKPOINT.KEEP_LAST per-epoch files stay (with the
final and best ones), and --resume gets past a last checkpoint that does not load."""
import logging
import os
import pickle
import re
import types

import pytest
import torch

import fastreid_slr  # noqa: F401  (compat patches first)
from fastreid_slr.engine import SLRCheckpointer, SLRTrainer, UnreadableCheckpoint
from fastreid_slr.engine.checkpointer import KeepLastCheckpoints, epoch_checkpoints
from tiny import TINY_SLR, tiny_baseline_cfg, tiny_slr_cfg


def _touch(folder, *names):
    for name in names:
        (folder / name).write_bytes(b"x")


def test_keep_last_deletes_older_and_stale_epoch_files(tmp_path):
    _touch(tmp_path, *(f"model_{e:04d}.pth" for e in range(6)), "model_final.pth", "model_best.pth", "last_checkpoint")
    hook = KeepLastCheckpoints(str(tmp_path), keep_last=2)
    hook.trainer = types.SimpleNamespace(epoch=3)  # resumed from epoch 2: 4 and 5 belong to an abandoned run
    hook.after_epoch()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0002.pth", "model_0003.pth",
                                            "model_best.pth", "model_final.pth"]
    assert epoch_checkpoints(str(tmp_path)) == ["model_0003.pth", "model_0002.pth"]


def test_keep_last_zero_keeps_everything_and_negative_is_refused(tmp_path):
    _touch(tmp_path, *(f"model_{e:04d}.pth" for e in range(4)))
    hook = KeepLastCheckpoints(str(tmp_path), keep_last=0)
    hook.trainer = types.SimpleNamespace(epoch=3)
    hook.after_epoch()
    assert len(os.listdir(tmp_path)) == 4
    with pytest.raises(ValueError, match="SLR.CHECKPOINT.KEEP_LAST must be >= 0"):
        KeepLastCheckpoints(str(tmp_path), keep_last=-1)


def test_stage_one_kept_only_its_last_two_epochs(source_weights):
    """conftest's stage 1 ran TINY_SLR's epochs with the default KEEP_LAST (2); the last one's is
    model_final.pth."""
    folder = os.path.dirname(source_weights)
    last = TINY_SLR["SLR.SOURCE.MAX_EPOCH"] - 2
    assert epoch_checkpoints(folder) == [f"model_{last:04d}.pth", f"model_{last - 1:04d}.pth"]
    assert os.path.isfile(os.path.join(folder, "model_final.pth"))


def _trainer(tmp_path, weights, resume):
    cfg = tiny_slr_cfg(tmp_path, os.path.dirname(weights), **{"SOLVER.MAX_EPOCH": 4, "SLR.ITERS_PER_EPOCH": 1,
                                                               "TEST.EVAL_PERIOD": 4})
    cfg.MODEL.WEIGHTS = weights
    trainer = SLRTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    return trainer


def test_stage_two_prunes_then_resume_falls_back_past_a_truncated_checkpoint(source_weights, tmp_path, caplog):
    _trainer(tmp_path, source_weights, resume=False).train()
    assert epoch_checkpoints(str(tmp_path)) == ["model_0002.pth", "model_0001.pth"]  # epoch 0's was pruned

    # A crash in epoch 3 after a copy truncated epoch 2's checkpoint.
    os.remove(tmp_path / "model_final.pth")
    (tmp_path / "last_checkpoint").write_text("model_0002.pth")
    data = (tmp_path / "model_0002.pth").read_bytes()
    (tmp_path / "model_0002.pth").write_bytes(data[: len(data) // 2])

    logger = logging.getLogger("fastreid_slr.engine.checkpointer")  # "fastreid_slr" may not propagate
    logger.addHandler(caplog.handler)
    try:
        trainer = _trainer(tmp_path, source_weights, resume=True)
    finally:
        logger.removeHandler(caplog.handler)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(tmp_path / "model_0002.pth") in m and "Cannot load checkpoint" in m for m in messages)
    assert any("Resuming from model_0001.pth (epoch 1) instead of model_0002.pth" in m and "1 epoch(s) to train again"
               in m for m in messages), messages
    assert trainer.start_epoch == 2
    saved = torch.load(tmp_path / "model_0001.pth", weights_only=True)
    assert trainer.pseudo_label_hook.labels.tolist() == saved["pseudo_labels"]["labels"]
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(tensor, saved["model"][name]), name

    (tmp_path / "model_0001.pth").write_bytes(b"")  # nothing left that loads: say so, naming the files
    with pytest.raises(UnreadableCheckpoint, match="no checkpoint in .* loads \\(tried model_0002.pth, model_0001.pth\\)"):
        _trainer(tmp_path, source_weights, resume=True)


# --------------------------------------------------------------------------- safe, named loading
def _checkpointer(cfg, save_dir):
    from fastreid.engine import DefaultTrainer

    model = DefaultTrainer.build_model(cfg)
    optimizer, _ = DefaultTrainer.build_optimizer(cfg, model)
    schedulers = DefaultTrainer.build_lr_scheduler(cfg, optimizer, iters_per_epoch=10)
    return model, SLRCheckpointer(model, str(save_dir), optimizer=optimizer, **schedulers)


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
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch's default turned unsafe
    path = tmp_path / "evil.pth"
    torch.save({"model": _Exploit()}, path)
    with pytest.raises(UnreadableCheckpoint, match="evil.pth: UnpicklingError") as info:
        SLRCheckpointer(torch.nn.Linear(1, 1))._load_file(str(path))
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)


def test_truncated_checkpoint_error_names_the_file(tmp_path):
    """torch's own error ("PytorchStreamReader failed reading zip archive") names no file."""
    SLRCheckpointer(torch.nn.Linear(3, 2), str(tmp_path)).save("model_0003")
    path = tmp_path / "model_0003.pth"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UnreadableCheckpoint, match=re.escape(f"Cannot load checkpoint {path}: RuntimeError")):
        SLRCheckpointer(torch.nn.Linear(3, 2)).load(str(path))
