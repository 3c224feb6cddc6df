"""SLR adaptation end to end on small procedural domains: stage 1, clustering rounds, refinement,
resized classifiers, label-quality telemetry, fast-reid's evaluation, and resume."""
import os

import numpy as np
import pytest

import fastreid_slr  # noqa: F401
from fastreid_slr.engine import SLRTrainer, check_adaptation_config, ensure_source_weights
from fastreid_slr.engine.records import RunRecord
from slr_refine import SLRRefiner
from slr_refine.quality import label_quality
from tiny import tiny_slr_cfg


@pytest.fixture
def source_dir(source_weights):
    """Stage 1's folder (conftest trains it once per session): its weights are reused, as the demo does."""
    return os.path.dirname(source_weights)


def _adapt(cfg, resume=False):
    cfg = cfg.clone()
    cfg.MODEL.WEIGHTS = ensure_source_weights(cfg)
    trainer = SLRTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    return trainer


def _records(output_dir):
    return RunRecord.read(str(output_dir)).pseudo_labels()


def test_adaptation_relabels_resizes_and_evaluates(source_dir, tmp_path, monkeypatch):
    cfg = tiny_slr_cfg(tmp_path, source_dir)
    seen = []
    original = SLRTrainer.set_train_labels

    def spy(self, labels, soft_labels=None, centroids=None):
        original(self, labels, soft_labels, centroids)
        seen.append((labels.copy(), self.model.num_classes))

    monkeypatch.setattr(SLRTrainer, "set_train_labels", spy)
    trainer = _adapt(cfg)
    assert trainer.model.num_classes == 12  # the source's identities, before any clustering
    results = trainer.train()

    assert len(seen) == 3  # one clustering per epoch
    for labels, num_classes in seen:
        assert num_classes == labels.max() + 1 >= 2  # classifiers resized to the clusters
    assert any(not np.array_equal(seen[0][0], labels) for labels, _ in seen[1:])  # labels change
    # The labels found identities: they agree with the truth better than any of 50 random
    # partitions with the same cluster sizes and outliers (ARI ~0) does.
    truth = trainer.pseudo_label_hook.true_ids
    rng = np.random.default_rng(0)
    for labels, _ in seen:
        chance = max(label_quality(rng.permutation(labels), truth)["ari"] for _ in range(50))
        assert label_quality(labels, truth)["ari"] > chance, (label_quality(labels, truth)["ari"], chance)

    records = _records(tmp_path)
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert [r["refined"] for r in records] == [0.0, 1.0, 1.0]  # SLR's projection ran from round 2
    assert all(-1 <= r["ari"] <= 1 and 0 <= r["pair_precision"] <= 1 for r in records)
    # ABMT's clustering distance: per-epoch eps from RHO, and the source term, in every record
    assert all(0 < r["eps"] < 0.9 and 0 < r["source_term_mean"] <= 1 for r in records)
    assert len({r["eps"] for r in records}) == 3
    assert 0 <= results["mAP"] <= 100 and "Rank-1" in results  # fast-reid's ReidEvaluator
    assert "pseudo/ari" in trainer.storage.histories()


class _Crash(Exception):
    pass


def test_resume_continues_refinement_from_saved_labels(source_dir, tmp_path, monkeypatch):
    cfg = tiny_slr_cfg(tmp_path, source_dir)
    previous_at_step = []
    step = SLRRefiner.step

    def recording_step(self, cur_labels):
        previous_at_step.append(None if self.prev_labels is None else self.prev_labels.copy())
        result = step(self, cur_labels)
        recorded.append(self.prev_labels.copy())  # what the next epoch will project from
        return result

    recorded = []
    monkeypatch.setattr(SLRRefiner, "step", recording_step)

    # Crash during epoch 2, after epoch 1's checkpoint was written.
    trainer = _adapt(cfg)
    crash_at = 2 * cfg.SLR.ITERS_PER_EPOCH + 1
    original_run_step = SLRTrainer.run_step

    def crashing_run_step(self):
        if self.iter == crash_at:
            raise _Crash()
        original_run_step(self)

    monkeypatch.setattr(SLRTrainer, "run_step", crashing_run_step)
    with pytest.raises(_Crash):
        trainer.train()
    saved_after_epoch_1 = recorded[1]

    monkeypatch.setattr(SLRTrainer, "run_step", original_run_step)
    previous_at_step.clear()
    resumed = _adapt(cfg, resume=True)
    assert resumed.start_epoch == 2
    resumed.train()
    # The first clustering after the resume projected from the checkpoint's labels of epoch 1.
    assert previous_at_step[0] is not None
    assert np.array_equal(previous_at_step[0], saved_after_epoch_1)


@pytest.mark.parametrize("opts,message", [
    (["SLR.CLUSTER.METHOD", "kmeans"], "SLR.CLUSTER.METHOD"),
    (["SLR.REFINE.HARDEN", "optics"], "SLR.REFINE.HARDEN"),
    (["SLR.REFINE.ALPHA", "1.5"], "SLR.REFINE.ALPHA"),
    (["SLR.SOURCE.WEIGHTS", "/nowhere/model_final.pth"], "/nowhere/model_final.pth"),
    (["DATASETS.NAMES", "('Market1501',)"], "Market1501"),
])
def test_bad_config_fails_at_startup(tmp_path, opts, message):
    cfg = tiny_slr_cfg(tmp_path / "out", tmp_path / "source", **dict(zip(opts[::2], opts[1::2])))
    with pytest.raises((ValueError, FileNotFoundError, KeyError)) as info:
        check_adaptation_config(cfg)
    assert message in str(info.value)


def test_soft_label_supervision_reaches_the_batch(tmp_path):
    """Module (h) "none": each kept sample carries its refined soft-label row as "targets_soft"."""
    import scipy.sparse as sp
    from PIL import Image

    from fastreid_slr.data.common import PseudoLabelledDataset

    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (8, 16)).save(paths[-1])
    items = [(p, "x_0", "x_0") for p in paths]
    labels = np.array([1, -1, 0, 1])
    soft = sp.csr_matrix(np.array([[0.25, 0.75], [0, 0], [1.0, 0], [0.5, 0.5]]))
    dataset = PseudoLabelledDataset(items, labels, transform=None, soft_labels=soft)
    assert len(dataset) == 3  # the outlier is dropped
    samples = [dataset[i] for i in range(3)]
    assert [s["targets"] for s in samples] == [1, 0, 1]
    assert [s["targets_soft"].tolist() for s in samples] == [[0.25, 0.75], [1.0, 0.0], [0.5, 0.5]]


def test_stage1_target_sampler_keeps_off_numpys_global_generator():
    """Stage 1's target sampler runs in a prefetch thread beside the source sampler, which draws
    from numpy's global generator: it must use its own, or a SEEDed run does not repeat."""
    import itertools

    from fastreid_slr.data.samplers import EndlessShuffle

    np.random.seed(5)
    sampler = EndlessShuffle(7)
    state = np.random.get_state()[1].copy()
    first = list(itertools.islice(iter(sampler), 21))
    assert np.array_equal(np.random.get_state()[1], state)  # no global draws while sampling
    assert first == list(itertools.islice(iter(sampler), 21))  # each pass of the loader repeats
    passes = [first[i:i + 7] for i in (0, 7, 14)]
    assert all(sorted(p) == list(range(7)) for p in passes) and passes[0] != passes[1]


def test_oracle_control_trains_on_the_true_identities(source_dir, tmp_path, monkeypatch):
    """SLR.ORACLE: the same stage 2 on the target's true identities (no clustering), every epoch."""
    cfg = tiny_slr_cfg(tmp_path, source_dir, **{"SLR.ORACLE": True, "SOLVER.MAX_EPOCH": 2})
    seen = []
    original = SLRTrainer.set_train_labels
    monkeypatch.setattr(SLRTrainer, "set_train_labels",
                        lambda self, labels, soft_labels=None, centroids=None: (
                            seen.append(labels.copy()), original(self, labels, soft_labels, centroids)))
    trainer = _adapt(cfg)
    trainer.train()
    _, truth = np.unique([pid for _, pid, _ in trainer.target_items], return_inverse=True)
    assert len(seen) == 2 and all(np.array_equal(labels, truth) for labels in seen)
    assert trainer.model.num_classes == truth.max() + 1
    records = _records(tmp_path)
    assert [r["ari"] for r in records] == [1.0, 1.0]


def test_the_papers_dual_resnet_adapts_end_to_end(tmp_path):
    """The paper's backbone (the dual ResNet, at depth 18) through stage 1 and stage 2: the same
    pipeline as the slim backbone's tiny run, labels better than chance, classifiers resized."""
    from fastreid_slr.modeling import DualResNet

    cfg = tiny_slr_cfg(tmp_path / "run", tmp_path / "source", **{
        "MODEL.BACKBONE.NAME": "build_dual_resnet_backbone", "MODEL.BACKBONE.DEPTH": "18x",
        "MODEL.BACKBONE.LAST_STRIDE": 1, "SLR.SOURCE.MAX_EPOCH": 6, "SOLVER.MAX_EPOCH": 2, "TEST.EVAL_PERIOD": 2})
    os.makedirs(cfg.OUTPUT_DIR)
    trainer = _adapt(cfg)
    assert isinstance(trainer.model.student.backbone, DualResNet)
    results = trainer.train()
    labels, truth = trainer.pseudo_label_hook.labels, trainer.pseudo_label_hook.true_ids
    assert trainer.model.num_classes == labels.max() + 1 >= 4
    rng = np.random.default_rng(0)
    chance = max(label_quality(rng.permutation(labels), truth)["ari"] for _ in range(50))
    assert label_quality(labels, truth)["ari"] > chance
    assert len([r for r in _records(tmp_path / "run") if "ari" in r]) == 2
    assert 0 < results["mAP"] <= 100
