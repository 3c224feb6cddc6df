"""tools/export.py (fastreid_slr.deploy): the evaluation model alone (the teacher, both branches) as
ONNX with a dynamic batch, and as TorchScript, giving PyTorch's features within 1e-4."""
import os

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from fastreid.modeling import build_model

from fastreid_slr.deploy import EvaluationModel, export_onnx
from test_backbones import BACKBONES, _slr_cfg
from tiny import REPO, tiny_slr_opts, train_net_cfg
from user_kit import DEMO_CONFIG, tiny_demo_cfg, tool, trained_checkpoint

TOLERANCE = 1e-4


def _onnx_features(path, images):
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["features"], {"images": images.numpy()})[0])


def _images(batch, size, seed=2):
    return torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(seed)) * 255


def _export_and_compare(tmp_path, config, opts, size, batches):
    """tools/export.py on a checkpoint of ``config``; each batch size's ONNX and TorchScript
    features against the model's own eval output. Returns the model and the ONNX file."""
    weights, onnx_path, script_path = (str(tmp_path / name) for name in ("model_final.pth", "m.onnx", "m.ts"))
    model = trained_checkpoint(train_net_cfg(config, *opts), weights)
    checked = tool("export").main(["--config-file", config, "--weights", weights, "--onnx", onnx_path,
                                   "--torchscript", script_path, *opts])
    assert 0 <= checked <= TOLERANCE
    script = torch.jit.load(script_path)
    for batch in batches:
        images = _images(batch, size)
        with torch.no_grad():
            expected = model(images)
            assert (_onnx_features(onnx_path, images) - expected).abs().max() <= TOLERANCE
            assert (script(images) - expected).abs().max() <= TOLERANCE
    return model, onnx_path


def test_the_slim_models_teacher_exports_alone_with_any_batch(tmp_path):
    model, onnx_path = _export_and_compare(tmp_path, DEMO_CONFIG, tiny_slr_opts(), (32, 16), batches=(1, 5))
    images = _images(3, (32, 16))
    with torch.no_grad():
        student = model.student.embedding((images - model.pixel_mean) / model.pixel_std)
    assert (_onnx_features(onnx_path, images) - student).abs().max() > 100 * TOLERANCE  # the teacher answers
    # the student stays behind: the file's weights are about half of the trained pair's
    exported = sum(int(np.prod(t.dims)) for t in onnx.load(onnx_path).graph.initializer)
    assert exported < 0.6 * sum(v.numel() for v in model.state_dict().values())


@pytest.mark.slow
def test_the_dual_resnet50_exports_within_the_tolerance(tmp_path):
    """The paper's model (configs/SLR/d2m.yml, random weights) at 256x128."""
    _export_and_compare(tmp_path, os.path.join(REPO, "configs", "SLR", "d2m.yml"),
                        ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False"], (256, 128), batches=(2,))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_the_plugin_accepts_exports(tmp_path, name):
    model = build_model(_slr_cfg(name, BACKBONES[name])).eval()
    path = str(tmp_path / "m.onnx")
    export_onnx(EvaluationModel(model), path, (64, 32))
    images = _images(3, (64, 32))
    with torch.no_grad():
        assert (_onnx_features(path, images) - model(images)).abs().max() <= TOLERANCE
