"""ABMT's training recipe as the paper trained it: stage-1 schedule and length, the source model
stage 2 starts from, cross-camera PK batches, and a teacher that only moves after a real optimiser
step."""
import itertools
import json
import logging
import os
import types

import numpy as np
import pytest
import torch

import fastreid_slr  # noqa: F401
from fastreid_slr.data.samplers import CrossCameraIdentitySampler
from fastreid_slr.engine import SourcePretrainTrainer, TeacherEMAHook, source_stage_config
from fastreid_slr.engine.pretraining import source_lr_factor
from tiny import tiny_slr_cfg


def test_stage1_learning_rate_of_every_epoch_follows_the_configured_schedule(tmp_path):
    """Warm-up from WARMUP_FACTOR over WARMUP_EPOCHS, then ×0.1 at each of STEPS counted from
    epoch 0 (fast-reid's own hook counted them from the end of its warm-up)."""
    cfg = tiny_slr_cfg(tmp_path / "out", tmp_path / "source", **{
        "SLR.SOURCE.MAX_EPOCH": 6, "SLR.SOURCE.STEPS": "[2, 4]", "SLR.SOURCE.WARMUP_EPOCHS": 3,
        "SLR.SOURCE.WARMUP_FACTOR": 0.01, "SLR.SOURCE.BASE_LR": 0.001, "SLR.PRETRAIN.TARGET_BN": False})
    stage = source_stage_config(cfg)
    os.makedirs(stage.OUTPUT_DIR)
    trainer = SourcePretrainTrainer(stage)
    trainer.resume_or_load(resume=False)
    trainer.train()
    per_epoch = {}
    for lr, iteration in trainer.storage.history("lr").values():
        per_epoch.setdefault(int(iteration) // trainer.iters_per_epoch, set()).add(round(lr, 12))
    warm = [0.01, 0.01 * 2 / 3 + 1 / 3, 0.01 / 3 + 2 / 3]  # linear from 0.01 over 3 epochs
    expected = [warm[0], warm[1], warm[2] * 0.1, 0.1, 0.01, 0.01]
    assert sorted(per_epoch) == list(range(6))
    for epoch, factor in enumerate(expected):
        assert per_epoch[epoch] == {round(0.001 * factor, 12)}, f"epoch {epoch}"


def test_paper_schedule_decays_at_epochs_40_and_70():
    factor = lambda e: source_lr_factor(e, steps=(40, 70), gamma=0.1, warmup_epochs=10, warmup_factor=0.01)  # noqa
    assert factor(0) == pytest.approx(0.01) and factor(5) == pytest.approx(0.505) and factor(10) == 1
    assert factor(39) == 1 and factor(40) == pytest.approx(0.1) and factor(69) == pytest.approx(0.1)
    assert factor(70) == pytest.approx(0.01) and factor(79) == pytest.approx(0.01)


def _stage_one(tmp_path, monkeypatch, **opts):
    """A tiny stage-1 trainer and a list that counts its optimiser steps."""
    cfg = tiny_slr_cfg(tmp_path / "out", tmp_path / "source", **opts)
    stage = source_stage_config(cfg)
    os.makedirs(stage.OUTPUT_DIR)
    steps = []
    original = SourcePretrainTrainer.run_step
    monkeypatch.setattr(SourcePretrainTrainer, "run_step", lambda self: (steps.append(self.epoch), original(self)))
    trainer = SourcePretrainTrainer(stage)
    trainer.resume_or_load(resume=False)
    return trainer, steps


@pytest.mark.parametrize("iters_per_epoch", [0, 9])
def test_stage1_epochs_last_iters_per_epoch_steps(tmp_path, monkeypatch, iters_per_epoch):
    """SLR.SOURCE.ITERS_PER_EPOCH steps an epoch (ABMT's --iters), more than a pass over this source
    set; 0 keeps fast-reid's epoch, len(source train set) // batch."""
    from fastreid_slr.data.loaders import load_train_items

    trainer, steps = _stage_one(tmp_path, monkeypatch, **{
        "SLR.SOURCE.MAX_EPOCH": 2, "SLR.SOURCE.ITERS_PER_EPOCH": iters_per_epoch, "SLR.SOURCE.EVAL_PERIOD": 0})
    trainer.train()
    per_pass = len(load_train_items(("ProceduralA",))) // 16  # TINY_SLR's SLR.SOURCE.IMS_PER_BATCH
    assert per_pass < 9
    expected = iters_per_epoch or per_pass
    assert steps == [0] * expected + [1] * expected


def test_stage2_starts_from_the_best_source_epoch_and_source_only_is_its_figure(tmp_path, monkeypatch, caplog):
    """SLR.SOURCE.EVAL_PERIOD 2 over 5 epochs: source evaluations after epochs 1, 3 and 4 (the last).
    Their source mAPs are set (60, 40, 50) so that the best is not the last, and fast-reid's own
    "metric" (10, 30, 20) would pick another: model_best.pth is epoch 1's, the record says so, and
    stage 1's final_results.json is that model's target evaluation."""
    from fastreid_slr.engine import ensure_source_weights
    from fastreid_slr.engine.stages import evaluate_on_target
    from fastreid_slr.utils import numeric_results

    real_test = SourcePretrainTrainer.test.__func__
    source_scores = iter([(60.0, 10.0), (40.0, 30.0), (50.0, 20.0)])
    evaluated = []

    def test(cls, cfg, model):
        evaluated.append(tuple(cfg.DATASETS.TESTS))
        if cfg.DATASETS.TESTS == ("ProceduralA",):
            mAP, metric = next(source_scores)
            return {"Rank-1": 90.0, "mAP": mAP, "mINP": 5.0, "metric": metric}
        return real_test(cls, cfg, model)

    monkeypatch.setattr(SourcePretrainTrainer, "test", classmethod(test))
    cfg = tiny_slr_cfg(tmp_path / "out", tmp_path / "source", **{
        "SLR.SOURCE.MAX_EPOCH": 5, "SLR.SOURCE.EVAL_PERIOD": 2, "SLR.SOURCE.ITERS_PER_EPOCH": 2,
        "SLR.CHECKPOINT.KEEP_LAST": 0})
    with caplog.at_level(logging.INFO, logger="fastreid_slr.engine.stages"):
        weights = ensure_source_weights(cfg)
    source = tmp_path / "source"
    assert weights == str(source / "model_best.pth")
    assert evaluated == [("ProceduralA",)] * 3 + [("ProceduralB",)]  # the target once, for the chosen model

    record = json.loads((source / "source_model.json").read_text())
    assert (record["epoch"], record["mAP"]) == (1, 60.0)
    assert [(e["epoch"], e["mAP"]) for e in record["evaluations"]] == [(1, 60.0), (3, 40.0), (4, 50.0)]
    assert "Stage 2 starts from" in caplog.text and "stage-1 epoch 1" in caplog.text

    def checkpoint(name):
        return torch.load(source / name, map_location="cpu", weights_only=True)

    best, epoch_1, final = checkpoint("model_best.pth"), checkpoint("model_0001.pth"), checkpoint("model_final.pth")
    assert best["epoch"] == 1
    assert all(torch.equal(v, epoch_1["model"][k]) for k, v in best["model"].items())
    assert any(not torch.equal(v, final["model"][k]) for k, v in best["model"].items())
    assert checkpoint("model_0003.pth")["source_model"]["best"]["epoch"] == 1  # what a resume restores

    final_results = json.loads((source / "final_results.json").read_text())
    assert final_results == numeric_results(evaluate_on_target(cfg, weights))
    assert ensure_source_weights(cfg) == weights and len(evaluated) == 5  # reused: no training, no evaluation
    # (the 5th is evaluate_on_target above)


def test_finished_stage1_without_source_evaluation_is_refused_at_start_up(tmp_path):
    from fastreid_slr.engine import check_adaptation_config

    cfg = tiny_slr_cfg(tmp_path / "out", tmp_path / "source", **{"SLR.SOURCE.EVAL_PERIOD": 40})
    os.makedirs(tmp_path / "source")
    (tmp_path / "source" / "model_final.pth").write_bytes(b"stage 1 trained with SLR.SOURCE.EVAL_PERIOD 0")
    with pytest.raises(FileNotFoundError, match="without model_best.pth.*SLR.SOURCE.EVAL_PERIOD 0"):
        check_adaptation_config(cfg)
    cfg.SLR.SOURCE.EVAL_PERIOD = 0
    check_adaptation_config(cfg)


def _items(cameras_per_id, images_per_camera=4, single=()):
    """(path, pid, camid) items: identity i is seen by cameras_per_id[i] cameras."""
    items = []
    for pid, n_cams in enumerate(cameras_per_id):
        for cam in range(n_cams):
            for k in range(1 if pid in single else images_per_camera):
                items.append((f"{pid}_{cam}_{k}.png", pid, f"c{cam}"))
    return items


def _batches(sampler, batch_size, count):
    stream = iter(sampler)
    return [list(itertools.islice(stream, batch_size)) for _ in range(count)]


def test_a_multi_camera_identity_brings_other_cameras_into_every_batch():
    items = _items([3] * 6 + [1] * 2)  # identities 6 and 7 are seen by one camera only
    sampler = CrossCameraIdentitySampler(items, mini_batch_size=16, num_instances=4, seed=0)
    for batch in _batches(sampler, 16, 50):
        groups = [batch[i:i + 4] for i in range(0, 16, 4)]
        assert len({items[i][1] for i in batch}) == 4  # P distinct identities of K instances
        for group in groups:
            pids, cams = {items[i][1] for i in group}, [items[i][2] for i in group]
            assert len(pids) == 1
            if pids.pop() < 6:  # the anchor's partners all come from its other cameras
                assert cams[0] not in cams[1:] and len(set(cams)) > 1


def test_sampler_repeats_under_a_seed_and_keeps_off_numpys_global_generator():
    items = _items([2, 3, 1, 2, 3, 2], single={2})
    np.random.seed(1)
    state = np.random.get_state()[1].copy()
    first = _batches(CrossCameraIdentitySampler(items, 8, 4, seed=7), 8, 20)
    assert np.array_equal(np.random.get_state()[1], state)
    assert first == _batches(CrossCameraIdentitySampler(items, 8, 4, seed=7), 8, 20)
    assert first != _batches(CrossCameraIdentitySampler(items, 8, 4, seed=8), 8, 20)
    alone = [i for i, item in enumerate(items) if item[1] == 2]
    assert all(b[k:k + 4] == alone * 4 for b in first for k in (0, 4) if b[k] in alone)  # one image: repeated


def test_ranks_share_one_stream_and_never_share_an_identity_in_a_step(monkeypatch):
    from fastreid.utils import comm

    items = _items([2] * 10)
    streams = []
    for rank in range(2):
        monkeypatch.setattr(comm, "get_rank", lambda r=rank: r)
        monkeypatch.setattr(comm, "get_world_size", lambda: 2)
        streams.append(_batches(CrossCameraIdentitySampler(items, 8, 4, seed=3), 8, 30))
    for a, b in zip(*streams):
        assert not {items[i][1] for i in a} & {items[i][1] for i in b}
    with pytest.raises(ValueError, match="identities"):
        CrossCameraIdentitySampler(_items([2] * 3), 8, 4, seed=0)  # 2 ranks x 2 identities > 3


def _tiny_slr_model():
    from fastreid.config import get_cfg
    from fastreid.modeling import build_model

    from fastreid_slr import add_slr_config

    cfg = add_slr_config(get_cfg())
    cfg.MODEL.META_ARCHITECTURE = "SLR"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "build_osnet_backbone"
    cfg.MODEL.BACKBONE.DEPTH = "x0_25"
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = 4
    cfg.INPUT.SIZE_TRAIN = cfg.INPUT.SIZE_TEST = [32, 16]
    return build_model(cfg)


def test_teacher_stays_put_when_the_grad_scaler_skips_the_step():
    model = _tiny_slr_model()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    hook = TeacherEMAHook()
    hook.trainer = types.SimpleNamespace(model=model, grad_scaler=scaler)
    batch = {"images": torch.rand(8, 3, 32, 16) * 255, "targets": torch.arange(4).repeat_interleave(2)}

    def step(poison):
        hook.before_step()
        optimizer.zero_grad()
        loss = sum(model(batch).values()) * (float("inf") if poison else 1.0)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        hook.after_step()

    def weights(net):  # parameters only: BN statistics follow every train-mode forward
        return {k: v.clone() for k, v in net.named_parameters()}

    step(poison=False)
    teacher, student, ema_step = weights(model.teacher), weights(model.student), int(model.ema_step)
    step(poison=True)  # inf gradients: the scaler skips the step and halves its scale
    assert scaler.get_scale() == 2.0 ** 7
    assert all(torch.equal(student[k], v) for k, v in model.student.named_parameters())
    assert all(torch.equal(teacher[k], v) for k, v in model.teacher.named_parameters())
    assert int(model.ema_step) == ema_step
    step(poison=False)
    assert int(model.ema_step) == ema_step + 1
    assert any(not torch.equal(teacher[k], v) for k, v in model.teacher.named_parameters())
