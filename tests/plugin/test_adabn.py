"""AdaBN (fastreid_slr.engine.adabn, `tools/train_net.py --adabn`): BN statistics re-estimated on the
target's images, nothing else changed; the control every adaptation result is measured against."""
import copy

import pytest
import torch
from torch import nn

from fastreid_slr.engine import reestimate_batch_norm
from tiny import tiny_slr_cfg


class FeatureNet(nn.Module):
    """An eval-mode forward over fast-reid batches that uses ``used`` and not ``unused``."""

    def __init__(self):
        super().__init__()
        self.used = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        self.unused = nn.BatchNorm2d(4)

    def forward(self, batch):
        return self.used(batch["images"]).mean((2, 3))


def _batches(n_batches=3, size=8, shift=5.0):
    gen = torch.Generator().manual_seed(0)
    return [{"images": torch.randn(size, 3, 4, 2, generator=gen) * 2 + shift} for _ in range(n_batches)]


def test_statistics_are_the_target_pass_average_and_nothing_else_moves():
    net = FeatureNet().eval()
    before = copy.deepcopy(net.state_dict())
    batches = _batches()
    assert reestimate_batch_norm(net, batches) == 24
    conv_out = torch.cat([net.used[0](b["images"]) for b in batches])
    bn = net.used[1]
    # equal batches: the cumulative average of the batch means is the mean over the pass
    torch.testing.assert_close(bn.running_mean, conv_out.mean((0, 2, 3)), rtol=1e-5, atol=1e-5)
    per_batch_var = torch.stack([net.used[0](b["images"]).var((0, 2, 3), unbiased=True) for b in batches])
    torch.testing.assert_close(bn.running_var, per_batch_var.mean(0), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(bn.running_mean, before["used.1.running_mean"])
    after = net.state_dict()
    for key in before:  # weights, the unused layer's statistics: as they were
        if not key.startswith("used.1.running") and key != "used.1.num_batches_tracked":
            torch.testing.assert_close(after[key], before[key])
    assert not net.training and not bn.training and bn.momentum == 0.1


def test_slr_model_adapts_its_teachers_statistics_only(source_weights, tmp_path):
    from fastreid_slr.engine import PluginTrainer, SLRCheckpointer, target_train_loader

    cfg = tiny_slr_cfg(tmp_path / "run", tmp_path / "source", **{"MODEL.BACKBONE.PRETRAIN": False})
    model = PluginTrainer.build_model(cfg)
    SLRCheckpointer(model).load(source_weights)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reestimate_batch_norm(model, target_train_loader(cfg))
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith("teacher.") and ".running_" in k or k.endswith("num_batches_tracked")
                         for k in moved), sorted(moved)[:5]
    assert not any(k.startswith("student.") for k in moved)


def test_train_net_adabn_evaluates_the_source_model_with_target_statistics(source_weights, tmp_path):
    import json

    from fastreid_slr.run import evaluate

    cfg = tiny_slr_cfg(tmp_path / "adabn", tmp_path / "source", **{"SLR.SOURCE.WEIGHTS": source_weights})
    cfg.freeze()
    adabn = evaluate(cfg, adabn=True)
    plain = evaluate(tiny_slr_cfg(tmp_path / "plain", tmp_path / "source", **{"MODEL.WEIGHTS": source_weights}),
                     adabn=False)
    written = json.loads((tmp_path / "adabn" / "final_results.json").read_text())
    assert written["mAP"] == pytest.approx(float(adabn["mAP"]))
    assert float(adabn["mAP"]) != float(plain["mAP"])  # the statistics changed the ranking
