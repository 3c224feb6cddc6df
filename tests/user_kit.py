"""What the tests of a trained model's uses (load, export, query) start from, in seconds rather than
a training run: a checkpoint as training leaves it, the demo config at the tiny overlay's size,
and the tools as modules."""
import importlib.util
import os

import torch
from fastreid.modeling import build_model

from fastreid_slr.engine import SLRCheckpointer
from tiny import REPO, tiny_slr_opts, train_net_cfg

DEMO_CONFIG = os.path.join(REPO, "configs", "Demo", "slr-procedural.yml")
CLASSES = 7  # the "last epoch's" cluster count: not the config's MODEL.HEADS.NUM_CLASSES


def tiny_demo_cfg(*opts):
    """The demo config with the tiny overlay's keys (32x16 images, tiny procedural sets), as
    tools/train_net.py loads it."""
    return train_net_cfg(DEMO_CONFIG, *tiny_slr_opts(), *opts)


@torch.no_grad()
def trained_checkpoint(cfg, path, seed=0):
    """A model of ``cfg`` as stage 2 (or, with ``SLR.MODE pretrain``, stage 1) leaves it, saved to
    ``path`` by the trainers' checkpointer: ``CLASSES`` classes, BN statistics that are not the
    initial ones, and (stage 2) a teacher that differs from its student. Returns the model, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    dims = [head.classifier.weight.shape[1] for head in model.student.heads]
    model.reset_classifiers(CLASSES, torch.randn(CLASSES, sum(dims)))
    for name, tensor in model.state_dict().items():
        if "running_mean" in name:
            tensor.normal_(0, 0.1)
        elif "running_var" in name:
            tensor.uniform_(0.5, 1.5)
    if model.teacher is not None:
        for parameter in model.student.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    SLRCheckpointer(model, os.path.dirname(path)).save(os.path.basename(path)[:-len(".pth")])
    return model.eval()


def tool(name):
    """``tools/<name>.py`` as a module (the tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
