"""The SLR meta-architecture: inference output, teacher/EMA, classifiers, checkpoints, training steps.

Building a model costs seconds on two cores: tests that change the model work on a deep copy of
one module-wide model, and only the tests about construction itself build more.
"""
import copy

import re

import pytest
import torch
import torch.nn.functional as F

import fastreid_slr  # noqa: F401  (compat first)
import fastreid_slr.modeling  # noqa: F401  (registers SLR and the dual backbone)
from fastreid.config import get_cfg
from fastreid.evaluation.reid_evaluation import ReidEvaluator
from fastreid.modeling import build_model
from fastreid.solver import build_optimizer
from fastreid_slr.engine import SLRCheckpointer
from fastreid_slr import add_slr_config
from fastreid_slr.modeling import SLR, BranchHead, TeacherEMA

IDS, PER_ID = 4, 2


def slr_cfg(num_classes=IDS, **slr):
    cfg = add_slr_config(get_cfg())
    cfg.MODEL.META_ARCHITECTURE = "SLR"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "build_dual_resnet_backbone"
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.HEADS.NUM_CLASSES = num_classes
    cfg.INPUT.SIZE_TRAIN = [64, 32]
    cfg.SOLVER.OPT = "Adam"
    cfg.SOLVER.BASE_LR = 3.5e-4
    for key, value in slr.items():
        node, name = key.split("__") if "__" in key else (None, key)
        (cfg.SLR[node] if node else cfg.SLR)[name] = value
    return cfg


def make_batch(seed=0, ids=IDS):
    g = torch.Generator().manual_seed(seed)
    return {
        "images": torch.rand(ids * PER_ID, 3, 64, 32, generator=g) * 255,
        "targets": torch.arange(ids).repeat_interleave(PER_ID),
        "camids": torch.zeros(ids * PER_ID, dtype=torch.long),
    }


def teacher_branch_b(model):
    """Every parameter of the teacher that only branch B uses."""
    t = model.teacher
    return [*t.backbone.layer4_b.parameters(), *t.backbone.extra_b.parameters(), *t.heads[1].parameters()]


@pytest.fixture(scope="module")
def built():
    torch.manual_seed(0)
    return build_model(slr_cfg())


@pytest.fixture
def model(built):
    return copy.deepcopy(built).train()


def test_eval_returns_the_teachers_joint_normalised_bn_features(model):
    with torch.no_grad():  # make the student differ from the teacher
        for p in model.student.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.eval()
    batch = make_batch()
    images = batch["images"].clone()
    with torch.no_grad():
        out = model(batch)
        x = (images - model.pixel_mean) / model.pixel_std
        expected = [F.normalize(torch.cat([a.bn_features, b.bn_features], 1), dim=1)
                    for a, b in (model.teacher(x), model.student(x))]
    assert torch.equal(batch["images"], images), "the caller's batch must not be normalised in place"
    assert out.shape == (IDS * PER_ID, 1024)
    torch.testing.assert_close(out, expected[0])
    assert not torch.allclose(out, expected[1])
    torch.testing.assert_close(out.norm(dim=1), torch.ones(len(out)))
    evaluator = ReidEvaluator(slr_cfg(), num_query=2)
    evaluator.process(batch, out)
    assert evaluator._predictions[0]["feats"].shape == (IDS * PER_ID, 1024)
    assert model.device == torch.device("cpu")


def test_a_single_output_backbone_feeds_both_heads():
    cfg = slr_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_osnet_backbone"
    cfg.MODEL.BACKBONE.DEPTH = "x0_25"
    model = build_model(cfg)
    pools = [type(h.pool).__name__ for h in model.student.heads]
    assert pools == ["GlobalAvgPool", "GlobalMaxPool"]
    losses = model.train()(make_batch())
    assert all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        feats = model.eval()(make_batch())
    dim = model.student.heads[0].bnneck.num_features
    assert feats.shape == (IDS * PER_ID, 2 * dim) and model.student.heads[1].bnneck.num_features == dim


def test_teacher_gets_no_gradient_and_a_cpu_step_trains_the_student(model):
    cfg = slr_cfg()
    optimizer, _ = build_optimizer(cfg, model)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in model.student.parameters() if p.requires_grad}
    assert not any(p.requires_grad for p in model.teacher.parameters())

    student0 = {n: p.detach().clone() for n, p in model.student.named_parameters()}
    teacher0 = {n: p.detach().clone() for n, p in model.teacher.named_parameters()}
    running0 = model.teacher.heads[0].bnneck.running_mean.clone()
    losses = model(make_batch())
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()

    assert all(p.grad is None for p in model.teacher.parameters())
    changed = [n for n, p in model.student.named_parameters() if not torch.equal(p, student0[n])]
    for name in ("backbone.conv1.weight", "backbone.layer4.1.conv2.weight", "backbone.extra_b.conv2.weight",
                 "heads.0.bnneck.weight", "heads.1.classifier.weight"):
        assert name in changed, name
    assert "heads.0.bnneck.bias" not in changed  # the BNNeck's bias is frozen
    assert all(torch.equal(p, teacher0[n]) for n, p in model.teacher.named_parameters())
    # param_only: the teacher's BN statistics come from its own train-mode forward
    assert not torch.equal(model.teacher.heads[0].bnneck.running_mean, running0)


def test_teacher_is_the_ema_of_the_student_after_k_steps(model):
    torch.manual_seed(0)
    cap, k = 0.7, 5
    model.ema_momentum = cap
    expected = {n: p.detach().clone() for n, p in model.teacher.named_parameters()}
    buffers0 = {n: b.clone() for n, b in model.teacher.named_buffers()}
    for alpha in (0, 1 / 2, 2 / 3, cap, cap):  # min(1 - 1/(step+1), cap), worked out by hand
        with torch.no_grad():  # stands for an optimiser step
            for p in model.student.parameters():
                p.add_(0.1 * torch.randn_like(p))
        student = dict(model.student.named_parameters())
        expected = {n: alpha * v + (1 - alpha) * student[n].detach() for n, v in expected.items()}
        model.update_teacher()
    assert int(model.ema_step) == k
    for n, p in model.teacher.named_parameters():
        torch.testing.assert_close(p, expected[n], rtol=1e-6, atol=1e-7)
    assert all(torch.equal(b, buffers0[n]) for n, b in model.teacher.named_buffers())  # param_only


def _previous_ema_update(teacher, student, momentum, bn_mode):
    """The EMA as it was before the fused version: per tensor, looked up by name at every step."""
    students = dict(student.named_parameters())
    for name, t in teacher.named_parameters():
        assert t.shape == students[name].shape
        t.mul_(momentum).add_(students[name].detach(), alpha=1.0 - momentum)
    if bn_mode != "param_only":
        buffers = dict(student.named_buffers())
        for name, t in teacher.named_buffers():
            if bn_mode == "ema" and t.is_floating_point():
                t.mul_(momentum).add_(buffers[name], alpha=1.0 - momentum)
            else:
                t.copy_(buffers[name])


class _SyncCounter:
    """Counts the Tensor -> Python conversions that wait for the device (int(), item(), bool())."""

    def __init__(self, monkeypatch):
        self.calls = 0
        for method in ("__int__", "item", "__bool__", "__float__", "tolist"):
            original = getattr(torch.Tensor, method)
            monkeypatch.setattr(torch.Tensor, method, self._counting(original))

    def _counting(self, original):
        def counted(tensor, *args, **kwargs):
            self.calls += 1
            return original(tensor, *args, **kwargs)
        return counted


@pytest.mark.parametrize("bn_mode", ["param_only", "ema"])
def test_fused_ema_matches_the_previous_update_over_ten_steps_without_syncing(model, bn_mode, monkeypatch):
    torch.manual_seed(0)
    model.ema_bn_mode, model.ema_momentum = bn_mode, 0.9
    model._forget_ema_pairs()
    reference = copy.deepcopy(model)
    builds = []
    monkeypatch.setattr(TeacherEMA, "__init__", _recording(TeacherEMA.__init__, builds))
    model.update_teacher()  # builds the pairs and reads ema_step once
    _previous_ema_update(reference.teacher, reference.student, 0.0, bn_mode)
    syncs = _SyncCounter(monkeypatch)
    for step in range(1, 10):
        with torch.no_grad():  # an optimiser step and new BN statistics, the same in both
            for p, q in zip(model.student.parameters(), reference.student.parameters()):
                p.add_(0.05 * torch.randn_like(p))
                q.copy_(p)
            for b, c in zip(model.student.buffers(), reference.student.buffers()):
                if b.is_floating_point():
                    b.add_(0.05 * torch.randn_like(b))
                    c.copy_(b)
        model.update_teacher()
        _previous_ema_update(reference.teacher, reference.student, min(1 - 1 / (step + 1), 0.9), bn_mode)
    monkeypatch.undo()
    assert syncs.calls == 0, "update_teacher waited on the device"
    assert len(builds) == 1, "names and shapes are checked once, not every step"
    assert int(model.ema_step) == 10
    for (name, t), r in zip(model.teacher.state_dict().items(), reference.teacher.state_dict().values()):
        torch.testing.assert_close(t, r, rtol=0, atol=1e-6, msg=name)
    moved = [n for n, t in model.teacher.named_buffers() if t.is_floating_point()
             and not torch.equal(t, reference.student.state_dict()[n])]
    assert moved, "the buffers were averaged, not left alone or copied"


def _recording(function, calls):
    def recorded(*args, **kwargs):
        calls.append(args)
        return function(*args, **kwargs)
    return recorded


def test_ema_follows_replaced_classifiers_and_loaded_steps(model, tmp_path):
    torch.manual_seed(0)
    model.update_teacher()
    model.reset_classifiers(5, torch.randn(5, 1024))  # new Parameter objects in all four heads
    with torch.no_grad():
        model.student.heads[0].classifier.weight.add_(1.0)
    before = model.teacher.heads[0].classifier.weight.clone()
    model.update_teacher()  # momentum min(1 - 1/2, 0.999) = 0.5
    torch.testing.assert_close(model.teacher.heads[0].classifier.weight, before + 0.5)

    SLRCheckpointer(model, str(tmp_path)).save("model_0000")
    model.update_teacher()
    model.update_teacher()
    SLRCheckpointer(model).load(str(tmp_path / "model_0000.pth"))  # back to ema_step 2
    assert int(model.ema_step) == 2
    before = model.teacher.heads[0].classifier.weight.clone()
    student = model.student.heads[0].classifier.weight.detach().clone()
    model.update_teacher()  # the host-side step count was reloaded too: momentum 1 - 1/3, not 1 - 1/5
    torch.testing.assert_close(model.teacher.heads[0].classifier.weight, before * 2 / 3 + student / 3)


def test_zero_ce_weights_leave_the_heads_without_gradient_and_the_model_says_so(model):
    assert not model.leaves_parameters_unused
    model.ce_weight = model.soft_ce_weight = 0.0  # λ1 = λ2 = 0 (Table 5): only the soft triplet
    assert model.leaves_parameters_unused
    sum(model(make_batch()).values()).backward()
    without = {n for n, p in model.student.named_parameters() if p.requires_grad and p.grad is None}
    heads = {f"heads.{i}.{layer}.weight" for i in (0, 1) for layer in ("bnneck", "classifier")}
    assert without == heads  # what DDP must be told to look for


def test_ema_refuses_networks_that_differ():
    with pytest.raises(ValueError, match="weight: teacher \\(3, 2\\) vs student \\(2, 2\\)"):
        TeacherEMA(torch.nn.Linear(2, 3), torch.nn.Linear(2, 2))


@pytest.mark.parametrize("mode", ["ema", "copy"])
def test_bn_buffer_modes(mode):
    teacher, student = (torch.nn.BatchNorm1d(3) for _ in range(2))
    with torch.no_grad():
        teacher.running_mean.fill_(1.0)
        student.running_mean.fill_(3.0)
        student.num_batches_tracked.fill_(7)
    TeacherEMA(teacher, student, mode).update(0.75)
    expected = 0.75 * 1.0 + 0.25 * 3.0 if mode == "ema" else 3.0
    torch.testing.assert_close(teacher.running_mean, torch.full((3,), expected))
    assert int(teacher.num_batches_tracked) == 7


def test_cross_branch_pairing_student_a_learns_from_teacher_b(model):
    model.train()
    torch.manual_seed(1)
    before = {k: v.item() for k, v in model(make_batch()).items()}
    with torch.no_grad():
        saved = [p.clone() for p in teacher_branch_b(model)]
        for p in teacher_branch_b(model):
            p.add_(0.5 * torch.randn_like(p))
        after = {k: v.item() for k, v in model(make_batch()).items()}
        for p, s in zip(teacher_branch_b(model), saved):
            p.copy_(s)
    changed = {k for k in before if before[k] != pytest.approx(after[k], rel=1e-6, abs=1e-7)}
    assert changed == {"loss_soft_ce_a", "loss_soft_triplet_a"}


def test_reset_classifiers_resizes_all_four_and_inits_from_centroid_halves(model):
    cfg = slr_cfg()
    k = 6
    centroids = torch.randn(k, 1024)
    model.reset_classifiers(k, centroids)
    for net, grad in ((model.student, True), (model.teacher, False)):
        for head, half in zip(net.heads, (centroids[:, :512], centroids[:, 512:])):
            w = head.classifier.weight
            assert w.shape == (k, 512) and w.requires_grad is grad
            torch.testing.assert_close(w, half / half.norm(dim=1, keepdim=True))
    assert model.num_classes == k
    optimizer, _ = build_optimizer(cfg, model)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(model.student.heads[1].classifier.weight) in optimized
    batch = make_batch()
    batch["targets_soft"] = F.one_hot(batch["targets"], k).float() * 0.5 + 0.5 / k
    losses = model(batch)
    assert torch.isfinite(sum(losses.values()))
    with pytest.raises(ValueError, match="centroids"):
        model.reset_classifiers(k, torch.randn(k, 512))


def test_checkpoint_round_trip_restores_student_teacher_and_classifier_size(model, tmp_path):
    torch.manual_seed(0)
    model.reset_classifiers(7, torch.randn(7, 1024))
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(0.01)
    model(make_batch())
    model.update_teacher()
    model.update_teacher()
    SLRCheckpointer(model, str(tmp_path)).save("model_final")
    path = tmp_path / "model_final.pth"
    torch.load(path, weights_only=True)

    fresh = build_model(slr_cfg(num_classes=3))
    SLRCheckpointer(fresh).load(str(path))
    assert fresh.num_classes == 7 and int(fresh.ema_step) == 2
    saved, loaded = model.state_dict(), fresh.state_dict()
    assert saved.keys() == loaded.keys()
    for key in saved:
        assert torch.equal(saved[key], loaded[key]), key
    assert not any(p.requires_grad for p in fresh.teacher.parameters())
    assert fresh.student.heads[0].classifier.weight.requires_grad


def test_checkpoints_of_any_size_share_keys_and_old_weight_k_files_still_load(model, tmp_path):
    """The classifier is a plain ``weight`` whatever its size; files that named it ``weight_k<K>``
    (releases before the checkpointer sized models) load the same."""
    model.reset_classifiers(7, torch.randn(7, 1024))
    SLRCheckpointer(model, str(tmp_path)).save("seven")
    model.reset_classifiers(4, torch.randn(4, 1024))
    SLRCheckpointer(model, str(tmp_path)).save("four")
    seven = torch.load(tmp_path / "seven.pth", weights_only=True)["model"]
    assert seven.keys() == torch.load(tmp_path / "four.pth", weights_only=True)["model"].keys()
    assert seven["teacher.heads.1.classifier.weight"].shape[0] == 7

    legacy = {re.sub(r"classifier\.weight$", "classifier.weight_k7", k): v for k, v in seven.items()}
    assert sum(k.endswith("weight_k7") for k in legacy) == 4
    torch.save({"model": legacy}, tmp_path / "legacy.pth")
    fresh = build_model(slr_cfg(num_classes=3))
    SLRCheckpointer(fresh).load(str(tmp_path / "legacy.pth"))
    assert fresh.num_classes == 7
    assert all(torch.equal(v, seven[k]) for k, v in fresh.state_dict().items())


def test_pretrain_checkpoint_starts_the_teacher_as_the_student(model, tmp_path):
    pretrained = build_model(slr_cfg(num_classes=5, MODE="pretrain"))
    assert pretrained.teacher is None
    SLRCheckpointer(pretrained, str(tmp_path)).save("stage1")
    adapt = model  # built with another class count and random weights
    SLRCheckpointer(adapt).load(str(tmp_path / "stage1.pth"))
    source = pretrained.student.state_dict()
    for net in (adapt.student, adapt.teacher):
        state = net.state_dict()
        assert state.keys() == source.keys()
        assert all(torch.equal(state[k], source[k]) for k in source)
    assert not any(p.requires_grad for p in adapt.teacher.parameters())


def test_pretraining_lowers_the_loss_and_adapts_bn_to_target_images():
    """A tiny OSNet keeps this quick; the dual ResNet's training step is tested above."""
    torch.manual_seed(0)
    cfg = slr_cfg(MODE="pretrain")
    cfg.MODEL.BACKBONE.NAME = "build_osnet_backbone"
    cfg.MODEL.BACKBONE.DEPTH = "x0_25"
    model = build_model(cfg).train()
    optimizer, _ = build_optimizer(cfg, model)
    # Each identity is a colour: learnable by a tiny net in a few dozen steps.
    colours = torch.rand(IDS, 3, 1, 1) * 255
    batches = []
    for seed in range(3):
        batch = make_batch(seed)
        batch["images"] = (0.7 * colours.repeat_interleave(PER_ID, 0) + 0.3 * batch["images"])
        batches.append(batch)
    history = []
    for it in range(24):
        losses = model(batches[it % 3])
        assert set(losses) == {"loss_ce_a", "loss_ce_b", "loss_triplet_a", "loss_triplet_b"}
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(total.item())
    assert sum(history[-3:]) < 0.7 * sum(history[:3]), history

    bn = model.student.heads[0].bnneck
    batch = dict(batches[0])
    running = bn.running_mean.clone()
    model(batch)
    without_target = bn.running_mean.clone()
    bn.running_mean.copy_(running)
    batch["target_images"] = torch.full_like(batch["images"], 255.0)
    model(batch)
    assert not torch.allclose(bn.running_mean, without_target)


def test_bad_options_are_refused():
    def slr(**kwargs):
        heads = [BranchHead(4, 2, "GlobalAvgPool"), BranchHead(4, 2, "GlobalMaxPool")]
        return SLR(backbone=torch.nn.Conv2d(3, 4, 1), heads=heads, pixel_mean=[0] * 3, pixel_std=[1] * 3, **kwargs)

    assert slr().teacher is not None
    with pytest.raises(ValueError, match="SLR.MODE"):
        slr(mode="finetune")
    with pytest.raises(ValueError, match="BN_MODE"):
        slr(ema_bn_mode="swap")
    with pytest.raises(ValueError, match="every loss weight is 0"):
        slr(ce_weight=0, soft_ce_weight=0, soft_tri_weight=0)
    with pytest.raises(ValueError, match="GlobalMinPool"):
        BranchHead(4, 2, "GlobalMinPool")
