#!/usr/bin/env python
"""Export a trained SLR model's evaluation part (the teacher, both branches) as ONNX, and optionally
TorchScript, then check the ONNX file against PyTorch with onnxruntime.

    python tools/export.py --config-file configs/Demo/slr-procedural.yml \\
        --weights output/demo/slr/model_final.pth --onnx output/demo/slr.onnx [--torchscript output/demo/slr.ts]

Any backbone the plugin accepts, from the config the model was trained with (and ``KEY VALUE``
overrides). The exported model takes ``images``, float32 (N, 3, H, W), RGB in 0..255 at the
config's ``INPUT.SIZE_TEST``, N free, and returns ``features`` (N, D), L2-normalised: the features
fast-reid's evaluator ranks by cosine distance. Needs the ``export`` extra (``pip install -e
'.[export]'``).
"""
import argparse
import sys

import torch

import fastreid_slr  # noqa: F401  (compat fixes, the plugin's registries)
from fastreid_slr.deploy import EvaluationModel, export_onnx, export_torchscript, load_trained, onnx_difference
from fastreid_slr.run import ConfigExtension, load_config
from procedural_reid import add_procedural_config

# The check's batch: not the exporters' example batch, so that it also checks the dynamic batch.
CHECK_BATCH = 3
# Most |onnxruntime - PyTorch| a feature may differ by (float32 kernels differ in summation order).
TOLERANCE = 1e-4


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, help="the config the model was trained with")
    parser.add_argument("--weights", required=True, help="a checkpoint of that model (e.g. model_final.pth)")
    parser.add_argument("--onnx", required=True, help="the ONNX file to write")
    parser.add_argument("--torchscript", help="also write a TorchScript file here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    args = parser.parse_args(argv)
    cfg = load_config(args, (ConfigExtension(add_procedural_config),))
    model = EvaluationModel(load_trained(cfg, args.weights))
    size = cfg.INPUT.SIZE_TEST
    export_onnx(model, args.onnx, size)
    images = torch.rand(CHECK_BATCH, 3, *size, generator=torch.Generator().manual_seed(1)) * 255
    difference = onnx_difference(model, args.onnx, images)
    print(f"ONNX: {args.onnx} (input images (N, 3, {size[0]}, {size[1]}) RGB 0..255, output features "
          f"(N, {model.feature_dim})); onnxruntime vs PyTorch on {CHECK_BATCH} images: max |diff| {difference:.2e}")
    if difference > TOLERANCE:
        sys.exit(f"The ONNX file's features differ from PyTorch's by {difference:.2e} > {TOLERANCE}: do not deploy it")
    if args.torchscript:
        export_torchscript(model, args.torchscript, size)
        print(f"TorchScript: {args.torchscript}")
    return difference


if __name__ == "__main__":
    main()
