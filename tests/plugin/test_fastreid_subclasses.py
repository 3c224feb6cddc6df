"""What the plugin chose beyond fast-reid lives in its own trainers' parts (engine/fastreid_subclasses.py,
engine/plugin_trainer.py): each works there, and fast-reid's own part, which a host project keeps, is unchanged."""
import logging
import subprocess
import sys

import pytest
import torch
from fastreid.engine import hooks as fastreid_hooks
from fastreid.engine.train_loop import AMPTrainer
from fastreid.evaluation import ReidEvaluator
from fastreid.utils.events import CommonMetricPrinter, EventStorage

from fastreid_slr.engine import PluginTrainer, SLRTrainer
from fastreid_slr.engine.fastreid_subclasses import DeviceAMPTrainer, OncePerIterationPrinter, PluginEvaluator
from tiny import random_batch, tiny_baseline_cfg, tiny_slr_cfg


def _amp_steps(trainer_class, steps=1):
    from fastreid.engine import DefaultTrainer

    cfg = tiny_baseline_cfg(num_classes=4)
    model = DefaultTrainer.build_model(cfg)
    optimizer, param_wrapper = DefaultTrainer.build_optimizer(cfg, model)
    trainer = trainer_class(model, iter([random_batch(seed=i) for i in range(steps)]), optimizer, param_wrapper)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    with EventStorage(0):
        for it in range(steps):
            trainer.iter = it
            trainer.run_step()
    return sum(not torch.equal(before[k], v.detach()) for k, v in model.named_parameters()) / len(before)


@pytest.mark.skipif(torch.cuda.is_available(), reason="fast-reid's AMP works where CUDA is")
def test_amp_on_the_cpu_in_the_plugins_trainer_only():
    assert _amp_steps(DeviceAMPTrainer) > 0.9  # bfloat16 autocast, no grad scaling
    with pytest.raises(AssertionError, match="CUDA is required for AMP"):
        _amp_steps(AMPTrainer)  # fast-reid's, as a host project has it


def test_plugin_trainers_run_on_the_plugins_parts(tmp_path):
    cfg = tiny_slr_cfg(tmp_path, tmp_path / "source", **{"SOLVER.AMP.ENABLED": True})
    trainer = SLRTrainer(cfg)
    assert isinstance(trainer._trainer, DeviceAMPTrainer)
    assert trainer.grad_scaler.is_enabled() == torch.cuda.is_available()  # what the teacher's EMA hook reads
    writers = [w for h in trainer._hooks if isinstance(h, fastreid_hooks.PeriodicWriter) for w in h._writers]
    assert [type(w) for w in writers if isinstance(w, CommonMetricPrinter)] == [OncePerIterationPrinter]
    _, evaluator = trainer.build_evaluator(cfg, "ProceduralB")
    assert isinstance(evaluator, PluginEvaluator)


def test_plugin_test_loader_uses_configured_workers(tmp_path):
    """fast-reid's test loader always starts 4 workers; the plugin's trainers use DATALOADER.NUM_WORKERS."""
    cfg = tiny_slr_cfg(tmp_path, tmp_path)
    cfg.DATALOADER.NUM_WORKERS = 0
    loader, num_query = PluginTrainer.build_test_loader(cfg, "ProceduralB")
    assert loader.num_workers == 0 and 0 < num_query < len(loader.dataset)


def test_evaluator_without_cython_never_compiles_in_site_packages(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "fastreid.evaluation.rank_cylib.rank_cy", None)  # not compiled
    commands = []
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: commands.append(command) or
                        subprocess.CompletedProcess(command, 0))
    monkeypatch.setattr(PluginEvaluator, "_warned", False)
    cfg = tiny_baseline_cfg()
    with caplog.at_level(logging.WARNING):
        PluginEvaluator(cfg, num_query=2)
    assert commands == [] and "evaluating with the slower Python one" in caplog.text
    ReidEvaluator(cfg, num_query=2)  # fast-reid's, as a host project has it: runs make
    assert commands and commands[0][0] == "make"


def _write_twice_at_iteration_one(printer):
    with EventStorage(0) as storage:
        storage.iter, storage.epoch = 0, 0
        printer.write()
        storage.iter = 1
        printer.write()  # the last step's write, then the epoch's: no iteration-time history yet
        printer.write()


def test_metric_printer_writes_once_per_iteration(caplog):
    with caplog.at_level(logging.INFO, logger="fastreid.utils.events"):
        _write_twice_at_iteration_one(OncePerIterationPrinter(max_iter=10))
    assert [r.getMessage().split("epoch/iter: ")[1].split()[0] for r in caplog.records] == ["0/0", "0/1"]
    with pytest.raises(ZeroDivisionError):
        _write_twice_at_iteration_one(CommonMetricPrinter(max_iter=10))  # fast-reid's
