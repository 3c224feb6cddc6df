"""The dual-branch ResNet: shapes per depth, IBN, structure, ImageNet weights from a local file."""
import pytest
import torch

import fastreid_slr  # noqa: F401  (compat first)
import fastreid_slr.modeling  # noqa: F401  (registers build_dual_resnet_backbone)
from fastreid.config import get_cfg
from fastreid.modeling.backbones import build_backbone
from fastreid.modeling.backbones.resnet import BasicBlock, Bottleneck, build_resnet_backbone
from fastreid_slr import add_slr_config


def backbone_cfg(depth="18x", **backbone):
    cfg = add_slr_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME = "build_dual_resnet_backbone"
    cfg.MODEL.BACKBONE.DEPTH = depth
    for key, value in backbone.items():
        cfg.MODEL.BACKBONE[key] = value
    return cfg


@pytest.mark.parametrize("depth, channels, ibn", [("18x", 512, False), ("50x", 2048, False), ("18x", 512, True)])
def test_two_maps_of_stage4_shape(depth, channels, ibn):
    net = build_backbone(backbone_cfg(depth, WITH_IBN=ibn)).eval()
    with torch.no_grad():
        a, b = net(torch.randn(2, 3, 64, 32))
    # last stride 1: 64x32 / 16 = 4x2
    assert a.shape == b.shape == (2, channels, 4, 2)
    assert not torch.allclose(a, b)


def test_last_stride_is_configurable():
    net = build_backbone(backbone_cfg("18x", LAST_STRIDE=2)).eval()
    with torch.no_grad():
        a, b = net(torch.randn(1, 3, 64, 32))
    assert a.shape[-2:] == b.shape[-2:] == (2, 1)


@pytest.mark.parametrize("depth, block, stage4, width", [("34x", BasicBlock, 3, 512), ("101x", Bottleneck, 3, 2048)])
def test_structure_of_deeper_resnets(depth, block, stage4, width):
    net = build_backbone(backbone_cfg(depth))
    assert len(net.layer4) == len(net.layer4_b) == stage4
    assert isinstance(net.extra_b, block) and net.extra_b.downsample is None
    assert net.extra_b.conv1.in_channels == width
    out = net.extra_b.conv3 if block is Bottleneck else net.extra_b.conv2
    assert out.out_channels == width
    if depth == "101x":
        assert len(net.layer3) == 23
    shared = {id(p) for p in net.layer4.parameters()} & {id(p) for p in net.layer4_b.parameters()}
    assert not shared, "branch B's stage 4 must be an independent copy"


def test_extra_block_initialised_as_abmts():
    """ABMT's weights_init_kaiming: convolutions over fan-in (1x1 2048 -> 512: std sqrt(2/2048); 512 ->
    2048: sqrt(2/512), the reverse of fast-reid's fan-out rule), BN weights from N(1, 0.02)."""
    torch.manual_seed(0)
    extra = build_backbone(backbone_cfg("50x")).extra_b
    assert extra.conv1.weight.std().item() == pytest.approx((2 / 2048) ** 0.5, rel=0.02)
    assert extra.conv3.weight.std().item() == pytest.approx((2 / 512) ** 0.5, rel=0.02)
    assert extra.conv2.weight.std().item() == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.02)
    for bn in (extra.bn1, extra.bn2, extra.bn3):
        assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.005)
        assert bn.weight.std().item() == pytest.approx(0.02, rel=0.15)
        assert torch.count_nonzero(bn.bias) == 0


def _fake_imagenet_weights(tmp_path, name="resnet18-5c106cde.pth"):
    """A single-branch fast-reid ResNet-18's state dict (as torchvision names it), saved to disk."""
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    state = build_resnet_backbone(cfg).state_dict()
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in state.items()}  # unlike any init
    state["fc.weight"] = torch.zeros(1000, 512)
    path = tmp_path / name
    torch.save(state, path)
    return path, state


def test_imagenet_weights_load_into_trunk_and_both_stage4_copies(tmp_path):
    path, state = _fake_imagenet_weights(tmp_path)
    torch.manual_seed(0)
    net = build_backbone(backbone_cfg("18x", PRETRAIN=True, PRETRAIN_PATH=str(path)))
    torch.manual_seed(0)
    fresh = build_backbone(backbone_cfg("18x", PRETRAIN=False))
    loaded = net.state_dict()
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        assert torch.equal(loaded[key], value), key
        if key.startswith("layer4."):
            assert torch.equal(loaded["layer4_b." + key[len("layer4."):]], value), key
    # The extra block has no ImageNet counterpart: it keeps exactly the init of an unloaded build.
    for key, value in fresh.extra_b.state_dict().items():
        assert torch.equal(net.extra_b.state_dict()[key], value), key


def test_imagenet_weights_from_the_torch_cache_when_no_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    _, state = _fake_imagenet_weights(tmp_path / "checkpoints")
    net = build_backbone(backbone_cfg("18x", PRETRAIN=True))
    assert torch.equal(net.layer4_b[0].conv1.weight, state["layer4.0.conv1.weight"])


def test_missing_weights_say_which_file(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build_backbone(backbone_cfg("18x", PRETRAIN=True, PRETRAIN_PATH=str(missing)))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="resnet18_ibn_a-2f571257.pth"):
        build_backbone(backbone_cfg("18x", PRETRAIN=True, WITH_IBN=True))


@pytest.mark.parametrize("depth, ibn", [("50x", False), ("50x", True), ("18x", False)])
def test_stem_relu_as_abmt_plain_resnet_drops_it_ibn_keeps_it(depth, ibn):
    """ABMT's resnet_AB.py: conv1 -> bn1 -> maxpool; resnet_AB_ibn.py: conv1 -> bn1 -> relu -> maxpool.
    fast-reid's own ResNet keeps its ReLU either way."""
    cfg = backbone_cfg(depth, WITH_IBN=ibn)
    dual = build_backbone(cfg)
    assert isinstance(dual.stem_act, torch.nn.ReLU) == ibn
    assert isinstance(dual.stem_act, torch.nn.Identity) != ibn
    stem_relus = [name for name, module in dual.named_children() if isinstance(module, torch.nn.ReLU)]
    assert stem_relus == (["stem_act"] if ibn else [])
    assert isinstance(build_resnet_backbone(cfg).relu, torch.nn.ReLU)


@pytest.mark.parametrize("depth, ibn", [("18x", False), ("50x", True)])
def test_built_from_fastreids_own_resnet_same_weights_and_outputs(depth, ibn):
    """Same seed: the trunk and branch A are fast-reid's ResNet exactly (weights, and output with
    the stem as ABMT's); branch B starts as a copy of its stage 4, followed by the extra block.
    Where ABMT drops the stem ReLU (plain ResNet), the output differs from fast-reid's own."""
    cfg = backbone_cfg(depth, WITH_IBN=ibn)
    torch.manual_seed(0)
    dual = build_backbone(cfg).eval()
    torch.manual_seed(0)
    reference = build_resnet_backbone(cfg).eval()
    reference_state = reference.state_dict()
    dual_state = dual.state_dict()
    for key, value in reference_state.items():
        assert torch.equal(dual_state[key], value), key
        if key.startswith("layer4."):
            assert torch.equal(dual_state["layer4_b." + key[len("layer4."):]], value), key
    assert set(dual_state) - set(reference_state) == {k for k in dual_state if k.startswith(("layer4_b.", "extra_b."))}
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        a, b = dual(images)
        assert torch.equal(a, reference(images)) == ibn  # fast-reid's own stem has the ReLU
        if not ibn:
            reference.relu = torch.nn.Identity()  # ABMT's plain stem
        torch.testing.assert_close(a, reference(images), rtol=0, atol=0)
        torch.testing.assert_close(b, dual.extra_b(reference.layer4(_trunk(reference, images))), rtol=0, atol=0)


def _trunk(resnet, x):
    """Stages 1-3 of fast-reid's ResNet, its non-local blocks included."""
    x = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
    for k in (1, 2, 3):
        nl_index = getattr(resnet, f"NL_{k}_idx")
        for i, block in enumerate(getattr(resnet, f"layer{k}")):
            x = block(x)
            if i in nl_index:
                x = getattr(resnet, f"NL_{k}")[nl_index.index(i)](x)
    return x
