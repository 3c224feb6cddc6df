"""The SLR meta-architecture (MODEL.META_ARCHITECTURE: SLR): a mean-teacher pair of two-branch nets.

Modes (SLR.MODE):

- ``"pretrain"`` (stage 1, labelled source): the student alone, trained with label-smoothed CE and a
  batch-hard soft-margin triplet on the pre-BN pooled features of both branches. A batch's
  ``"target_images"`` (optional) are forwarded without loss to adapt the BN statistics to the target
  domain (SLR.PRETRAIN.TARGET_BN). There is no teacher: checkpoints hold ``student.*`` and
  ``ema_step``, and eval mode returns the student's features. Loading such a checkpoint into an
  ``"adapt"`` model initialises the teacher from the student (§3.1-3.2: both start from it).
  The backbone is any fast-reid backbone: one returning a tuple of two maps (the dual ResNet) gives
  each branch its own stage 4, a single-output one feeds both heads.
- ``"adapt"`` (stage 2, pseudo-labelled target): student and teacher see the same batch; the
  losses are Eq. 6's three terms, cross-branch (§3.10). Eval mode returns the teacher's features.

Trainer contract:

- ``model(batch)``: ``batch["images"]`` (B, 3, H, W) floats in 0..255, ``batch["targets"]`` (B,)
  long; optional ``batch["targets_soft"]`` (B, K) label distributions (they replace the hard labels
  in the CE term; the triplet terms still mine with ``targets``) and, in pretrain mode,
  ``batch["target_images"]``. The batch is not modified (normalisation is out of place). Training
  returns a dict of losses to sum; eval returns ``normalize(cat(bn_A, bn_B))`` (B, dim_A + dim_B),
  what fast-reid's ReidEvaluator consumes.
- ``update_teacher()`` after every optimiser step (on the unwrapped model under DDP): one EMA step
  with momentum ``min(1 - 1/(step+1), m)`` and ``step`` the checkpointed ``ema_step`` buffer (read
  from the device once, then counted on the host: no device sync per step). An explicit call, not
  something the forward does by itself: only the trainer knows when a step really happened
  (skipped AMP steps, accumulation), and the teacher must be current when evaluation follows the
  last step. A no-op in pretrain mode.
- ``reset_classifiers(K, centroids)`` at each epoch's relabelling replaces the four classifiers'
  parameters: rebuild the optimiser afterwards (fast-reid's ``build_optimizer(cfg, model)`` walks
  the parameters again; teacher parameters have ``requires_grad=False`` and are skipped) and, under
  DDP, the DistributedDataParallel wrapper.
- ``resize_classifiers_to(state_dict)`` before loading a checkpoint whose class count differs
  (``SLRCheckpointer`` calls it): the four classifiers take the file's sizes, then load whole.
  Built from a config whose ``MODEL.WEIGHTS`` names a checkpoint, the model takes that file's
  sizes at once, so that fast-reid's own ``Checkpointer`` and ``DefaultPredictor`` load it without
  a warning: they drop every tensor whose shape differs from the model's before
  ``load_state_dict`` runs, so no load hook could resize in time.
- With λ1 = λ2 = 0 (a Table 5 ablation) the BNNecks and classifiers get no gradient:
  ``leaves_parameters_unused`` says so, and the plugin's DDP wrapper then searches for unused
  parameters (``find_unused_parameters``).
"""
import copy
import os
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fastreid.config import configurable
from fastreid.modeling.backbones import build_backbone
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from .ema import BN_MODES, TeacherEMA, momentum_at
from .heads import BranchHead, TwoBranchNet, feature_dims
from .losses import adapt_losses, pretrain_losses

MODES = ("adapt", "pretrain")


@META_ARCH_REGISTRY.register()
class SLR(nn.Module):
    """Student and EMA teacher, each a backbone with two asymmetric branches (see the module doc)."""

    @configurable
    def __init__(self, *, backbone: nn.Module, heads: Sequence[BranchHead], pixel_mean: Sequence[float],
                 pixel_std: Sequence[float], mode: str = "adapt", ema_momentum: float = 0.999,
                 ema_bn_mode: str = "param_only", ce_weight: float = 0.5, soft_ce_weight: float = 0.5,
                 soft_tri_weight: float = 1.0, ce_epsilon: float = 0.1, soft_tri_norm_feat: bool = False,
                 pretrain_tri_margin: float = 0.0, pretrain_target_bn: bool = True,
                 sized_like: Mapping[str, torch.Tensor] = None):
        """
        Args:
            backbone: any fast-reid backbone; a tuple-returning one (the dual ResNet) gives each
                branch its own map.
            heads: the two branch heads, A then B.
            ce_weight, soft_ce_weight, soft_tri_weight: λ1, λ2, λ3 of Eq. 6; 0 drops the term.
            ce_epsilon: label smoothing of the hard-label CE (both modes).
            pretrain_tri_margin: stage 1's triplet margin, 0 for the soft margin.
            sized_like: a checkpoint's model state whose classifier sizes the model takes
                (``resize_classifiers_to``): the file it is about to load.
        """
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"SLR.MODE {mode!r} is not one of {MODES}")
        if ema_bn_mode not in BN_MODES:
            raise ValueError(f"SLR.EMA.BN_MODE {ema_bn_mode!r} is not one of {BN_MODES}")
        if mode == "adapt" and not (ce_weight or soft_ce_weight or soft_tri_weight):
            raise ValueError("SLR.LOSS: every loss weight is 0, nothing to train")
        self.mode = mode
        self.ema_momentum = ema_momentum
        self.ema_bn_mode = ema_bn_mode
        self.ce_weight, self.soft_ce_weight, self.soft_tri_weight = ce_weight, soft_ce_weight, soft_tri_weight
        self.ce_epsilon = ce_epsilon
        self.soft_tri_norm_feat = soft_tri_norm_feat
        self.pretrain_tri_margin = pretrain_tri_margin
        self.pretrain_target_bn = pretrain_target_bn

        self.student = TwoBranchNet(backbone, heads)
        self.teacher = copy.deepcopy(self.student).requires_grad_(False) if mode == "adapt" else None
        self.register_buffer("ema_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_load_state_dict_pre_hook(SLR._teacher_from_student_if_absent)
        self.register_load_state_dict_post_hook(lambda module, incompatible: module._forget_ema_pairs())
        self._forget_ema_pairs()
        self.resize_classifiers_to(sized_like or {})

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        pools = (cfg.SLR.BRANCH.POOL_A, cfg.SLR.BRANCH.POOL_B)
        heads = [BranchHead(dim, cfg.MODEL.HEADS.NUM_CLASSES, pool, cfg.MODEL.HEADS.NORM)
                 for dim, pool in zip(feature_dims(backbone, cfg.INPUT.SIZE_TRAIN), pools)]
        return {
            "backbone": backbone,
            "heads": heads,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "mode": cfg.SLR.MODE,
            "ema_momentum": cfg.SLR.EMA.MOMENTUM,
            "ema_bn_mode": cfg.SLR.EMA.BN_MODE,
            "ce_weight": cfg.SLR.LOSS.CE_WEIGHT,
            "soft_ce_weight": cfg.SLR.LOSS.SOFT_CE_WEIGHT,
            "soft_tri_weight": cfg.SLR.LOSS.SOFT_TRI_WEIGHT,
            "ce_epsilon": cfg.SLR.LOSS.CE_EPSILON,
            "soft_tri_norm_feat": cfg.SLR.LOSS.SOFT_TRI_NORM_FEAT,
            "pretrain_tri_margin": cfg.SLR.PRETRAIN.TRI_MARGIN,
            "pretrain_target_bn": cfg.SLR.PRETRAIN.TARGET_BN,
            "sized_like": saved_model_state(cfg.MODEL.WEIGHTS),
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def num_classes(self) -> int:
        return self.student.heads[0].classifier.num_classes

    @property
    def evaluation_net(self) -> TwoBranchNet:
        """What eval mode runs: the teacher (the student in pretrain mode, which has none)."""
        return self.teacher if self.teacher is not None else self.student

    @property
    def leaves_parameters_unused(self) -> bool:
        """λ1 = λ2 = 0: no loss reaches the BNNecks and classifiers (DDP must look for them)."""
        return self.mode == "adapt" and not (self.ce_weight or self.soft_ce_weight)

    # ------------------------------------------------------------------ forward
    def forward(self, batched_inputs):
        if not self.training:
            return self.evaluation_net.embedding(self.preprocess_image(batched_inputs))
        assert "targets" in batched_inputs, "identity labels are missing in training"
        targets = batched_inputs["targets"].to(self.device)
        images = self.preprocess_image(batched_inputs)
        student = self.student(images)
        if self.mode == "pretrain":
            if self.pretrain_target_bn and "target_images" in batched_inputs:
                with torch.no_grad():
                    self.student(self.preprocess_image(batched_inputs["target_images"]))
            return pretrain_losses(student, targets, ce_epsilon=self.ce_epsilon, tri_margin=self.pretrain_tri_margin)
        with torch.no_grad():
            teacher = self.teacher(images)
        soft = batched_inputs.get("targets_soft")
        return adapt_losses(student, teacher, targets, None if soft is None else soft.to(self.device),
                            ce_weight=self.ce_weight, soft_ce_weight=self.soft_ce_weight,
                            soft_tri_weight=self.soft_tri_weight, ce_epsilon=self.ce_epsilon,
                            soft_tri_norm_feat=self.soft_tri_norm_feat)

    def preprocess_image(self, batched_inputs) -> torch.Tensor:
        """Normalised images, out of place: the caller's batch stays as it was."""
        images = batched_inputs["images"] if isinstance(batched_inputs, dict) else batched_inputs
        return (images.to(self.device) - self.pixel_mean) / self.pixel_std

    # ------------------------------------------------------------------ trainer API
    @torch.no_grad()
    def update_teacher(self):
        """One EMA step of the teacher towards the student; call after every optimiser step."""
        if self.teacher is None:
            return
        if self._ema is None:
            self._ema = TeacherEMA(self.teacher, self.student, self.ema_bn_mode)
        if self._ema_steps is None:
            self._ema_steps = int(self.ema_step)  # the one device sync, after a build or a load
        self._ema.update(momentum_at(self._ema_steps, self.ema_momentum))
        self._ema_steps += 1
        self.ema_step.add_(1)

    def _forget_ema_pairs(self):
        """The EMA's tensor pairs and host-side step count are stale: rebuild them at the next update."""
        self._ema, self._ema_steps = None, None

    def _apply(self, fn, *args, **kwargs):
        """``.to()`` / ``.cuda()`` replace buffers (and, for some conversions, parameters)."""
        self._forget_ema_pairs()
        return super()._apply(fn, *args, **kwargs)

    @torch.no_grad()
    def reset_classifiers(self, num_classes: int, centroids: torch.Tensor):
        """Resize the four classifiers to ``num_classes`` and initialise them from cluster centroids.

        ``centroids`` (K, dim_A + dim_B): per-cluster mean of the teacher's eval features; branch A's
        classifiers get the L2-normalised first dim_A columns, branch B's the rest (ABMT). Rebuild
        the optimiser afterwards: the classifier parameters are new objects.
        """
        dims = [head.classifier.weight.shape[1] for head in self.student.heads]
        if tuple(centroids.shape) != (num_classes, sum(dims)):
            raise ValueError(f"centroids must be ({num_classes}, {sum(dims)}), got {tuple(centroids.shape)}")
        halves = torch.split(centroids.float(), dims, dim=1)
        for net in (n for n in (self.student, self.teacher) if n is not None):
            for head, half in zip(net.heads, halves):
                head.classifier.reset(F.normalize(half, dim=1))
        self._forget_ema_pairs()

    @torch.no_grad()
    def resize_classifiers_to(self, state_dict):
        """Give the four classifiers the class counts ``state_dict`` holds, so that it loads whole
        (``SLRCheckpointer`` calls this before loading). A state without a teacher (stage 1's)
        sizes the teacher like its student. Rebuild the optimiser afterwards."""
        for net_name, net in (("student", self.student), ("teacher", self.teacher)):
            for index, head in enumerate(net.heads if net is not None else ()):
                key = f"heads.{index}.classifier.weight"
                saved = state_dict.get(f"{net_name}.{key}", state_dict.get(f"student.{key}"))
                if saved is not None and saved.shape[0] != head.classifier.num_classes:
                    head.classifier.reset(torch.zeros(saved.shape[0], head.classifier.weight.shape[1]))
        self._forget_ema_pairs()

    def _teacher_from_student_if_absent(self, state_dict, prefix, *args):
        """Loading a checkpoint without a teacher (stage 1's) starts the teacher as the student."""
        if self.teacher is None or any(k.startswith(prefix + "teacher.") for k in state_dict):
            return
        student = prefix + "student."
        state_dict.update({prefix + "teacher." + k[len(student):]: v
                           for k, v in list(state_dict.items()) if k.startswith(student)})


def saved_model_state(path: str) -> Mapping[str, torch.Tensor]:
    """The model state of the checkpoint at ``path``, memory-mapped (nothing is read but what is
    touched: the classifiers' shapes); empty when ``path`` is not a file (no weights, or a URL)."""
    if not path or not os.path.isfile(path):
        return {}
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - whatever torch raises, the file is what the user needs
        raise ValueError(f"MODEL.WEIGHTS {path} does not load: {type(exc).__name__}: {str(exc)[:300]}") from exc
    return checkpoint.get("model", {}) if isinstance(checkpoint, dict) else {}
