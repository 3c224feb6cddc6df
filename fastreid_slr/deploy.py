"""The trained model outside its trainer: loaded the fast-reid way, its evaluation part alone, and
that part exported as ONNX (dynamic batch) or TorchScript.

What deploys is what fast-reid's evaluator scores: for SLR the teacher, both branches, pixel
normalisation included, returning ``normalize(cat(bn_A, bn_B))``. The student, the classifiers
(whose size is the last epoch's cluster count) and the EMA belong to training and stay behind.
ONNX export needs the ``export`` extra (``pip install -e '.[export]'``: onnx, onnxscript for
torch's exporter, onnxruntime for the check); training never imports it.
"""
import copy
from typing import Sequence

import numpy as np
import torch
from fastreid.engine import DefaultPredictor
from torch import nn

from .modeling import SLR
from .run import run_device

__all__ = ["EvaluationModel", "export_onnx", "export_torchscript", "load_trained", "onnx_difference"]

# The batch the exporters trace with; ONNX keeps the batch dimension dynamic.
_EXAMPLE_BATCH = 2


def load_trained(cfg, weights: str) -> nn.Module:
    """``cfg``'s model with ``weights`` loaded, in eval mode, as fast-reid's ``DefaultPredictor``
    loads it (its ``Checkpointer``); on the CPU when the config asks for CUDA and there is none."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = weights
    cfg.MODEL.DEVICE = run_device(cfg)
    return DefaultPredictor(cfg).model


class EvaluationModel(nn.Module):
    """An SLR model's evaluation path, alone: images (N, 3, H, W), RGB in 0..255 at
    ``INPUT.SIZE_TEST`` (what fast-reid's test loader feeds) -> (N, D) L2-normalised features, equal
    to the model's eval output. A copy, on the CPU: the trained model is left as it was."""

    def __init__(self, model: SLR):
        super().__init__()
        if not isinstance(model, SLR):
            raise TypeError(f"EvaluationModel takes an SLR model (MODEL.META_ARCHITECTURE SLR), "
                            f"got {type(model).__name__}")
        self.net = copy.deepcopy(model.evaluation_net).cpu().eval()
        self.register_buffer("pixel_mean", model.pixel_mean.detach().cpu().clone())
        self.register_buffer("pixel_std", model.pixel_std.detach().cpu().clone())
        self.eval()

    @property
    def feature_dim(self) -> int:
        return sum(head.bnneck.num_features for head in self.net.heads)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.embedding((images - self.pixel_mean) / self.pixel_std)


def _example(image_size: Sequence[int]) -> torch.Tensor:
    return torch.rand(_EXAMPLE_BATCH, 3, *image_size, generator=torch.Generator().manual_seed(0)) * 255


def export_onnx(model: EvaluationModel, path: str, image_size: Sequence[int]) -> None:
    """``model`` as one ONNX file (weights inside): input ``images``, output ``features``, any batch."""
    with torch.no_grad():
        torch.onnx.export(model, (_example(image_size),), path, input_names=["images"], output_names=["features"],
                          dynamic_shapes={"images": {0: torch.export.Dim("batch")}}, external_data=False,
                          dynamo=True)


def export_torchscript(model: EvaluationModel, path: str, image_size: Sequence[int]) -> None:
    """``model`` traced to TorchScript (``torch.jit.load(path)`` runs it without this package)."""
    with torch.no_grad():
        torch.jit.trace(model, _example(image_size)).save(path)


def onnx_difference(model: EvaluationModel, path: str, images: torch.Tensor) -> float:
    """Max |onnxruntime - PyTorch| over the features of ``images``: what an export is checked by."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    exported = session.run(["features"], {"images": images.numpy().astype(np.float32)})[0]
    with torch.no_grad():
        expected = model(images).numpy()
    return float(np.abs(exported - expected).max())
