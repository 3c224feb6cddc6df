"""Stage 2: SLR adaptation, a thin DefaultTrainer subclass that swaps its training set every epoch.

fast-reid's DefaultTrainer builds one training set from ``DATASETS.NAMES`` at construction and
keeps it. Adaptation swaps it every epoch: the pseudo-label hook calls ``set_train_labels``, which
builds a new loader over the kept samples, and resets the optimiser in place (a fresh Adam, as
ABMT) so every object holding it (LR scheduler hook, checkpointer) stays valid.
"""
import os
import time
from collections import OrderedDict

import numpy as np
from fastreid.data.transforms import build_transforms
from fastreid.engine import hooks as fastreid_hooks
from fastreid.utils import comm

from slr_refine import camera_normalized

from ..data.common import PseudoLabelledDataset
from ..data.image_cache import ImageCache
from ..data.loaders import build_identity_loader, load_train_items
from ..data.paths import build_dataset
from ..utils import distributed_data_parallel, unwrap
from .plugin_trainer import PluginTrainer
from .camera_bn import camera_indices, extract_features_per_camera_bn
from .features import extract_features
from .hooks import EpochRecordHook, Labeler, PseudoLabelHook, TeacherEMAHook
from .pseudo_labels import build_labeler
from .records import EPOCHS_FILE


class _AwaitingPseudoLabels:
    """Stands in for the train loader until the first clustering replaces it (before epoch 0).

    fast-reid derives an epoch's iterations from the train loader, ``len(dataset) //
    SOLVER.IMS_PER_BATCH``, once, at construction: this one declares ``SLR.ITERS_PER_EPOCH``
    batches, the length of every adaptation epoch (ABMT's fixed 400), whatever the clusters keep.
    """

    class _Epoch:
        """What fast-reid reads of a train set: its length, and a class count (until the first
        clustering sizes the classifiers, MODEL.HEADS.NUM_CLASSES or 1)."""

        def __init__(self, images: int, num_classes: int):
            self.images, self.num_classes = images, num_classes

        def __len__(self):
            return self.images

    def __init__(self, iters_per_epoch: int, batch_size: int, num_classes: int):
        self.dataset = self._Epoch(iters_per_epoch * batch_size, num_classes)

    def __iter__(self):
        yield from ()
        raise RuntimeError("training started before the first pseudo-labels were computed")

    def shutdown(self):
        pass


class SLRTrainer(PluginTrainer):
    """Stage 2: mean-teacher training on per-epoch refined pseudo-labels of ``DATASETS.NAMES``.

    It is the trainer ``PseudoLabelHook`` expects (``hooks.AdaptationTrainer``): it extracts the
    teacher's features, takes each epoch's labels, and reports the last evaluation. Every feature
    pass (target, source, per camera, evaluation) reads the run's ``ImageCache``.
    """

    def __init__(self, cfg):
        self.target_items = load_train_items(cfg.DATASETS.NAMES)
        self.source_items = load_train_items(cfg.SLR.SOURCE.DATASETS) if cfg.SLR.CLUSTER.SOURCE_WEIGHT > 0 else []
        self.epoch_seconds = {}
        super().__init__(cfg)
        self.checkpointer.checkpointables["pseudo_labels"] = self.pseudo_label_hook
        self.image_cache = ImageCache.from_config(cfg, build_transforms(cfg, is_train=False))
        sets = OrderedDict([("target", len(self.target_items)), ("source", len(self.source_items))])
        for name in cfg.DATASETS.TESTS:
            test = build_dataset(name)
            sets[f"test {name}"] = len(test.query) + len(test.gallery)
        height, width = cfg.INPUT.CROP.SIZE if cfg.INPUT.CROP.ENABLED else cfg.INPUT.SIZE_TEST
        self.image_cache.plan(OrderedDict((k, v) for k, v in sets.items() if v), image_bytes=3 * height * width)

    @classmethod
    def build_train_loader(cls, cfg):
        return _AwaitingPseudoLabels(cfg.SLR.ITERS_PER_EPOCH, cfg.SOLVER.IMS_PER_BATCH, cfg.MODEL.HEADS.NUM_CLASSES or 1)

    def build_hooks(self):
        cfg = self.cfg
        _, true_ids = np.unique([pid for _, pid, _ in self.target_items], return_inverse=True)
        self.pseudo_label_hook = PseudoLabelHook(
            self.build_labeler(cfg, true_ids, camera_indices(self.target_items)), num_items=len(self.target_items),
            every=cfg.SLR.CLUSTER_EVERY,
            # fast-reid's identity sampler fills the global batch (all ranks) from one pass over the
            # identities; with fewer than IMS_PER_BATCH / NUM_INSTANCE clusters it can loop forever.
            min_clusters=cfg.SOLVER.IMS_PER_BATCH // cfg.DATALOADER.NUM_INSTANCE,
            true_ids=true_ids)
        record = EpochRecordHook(self.pseudo_label_hook,
                                 os.path.join(cfg.OUTPUT_DIR, EPOCHS_FILE) if comm.is_main_process() else None)
        hooks = super().build_hooks()
        # fast-reid's evaluation, through the image cache; then pseudo-labels (before_epoch) and the
        # epoch's record, which follows the evaluation (after_epoch)
        eval_at = next(i for i, h in enumerate(hooks) if isinstance(h, fastreid_hooks.EvalHook))
        hooks[eval_at] = fastreid_hooks.EvalHook(cfg.TEST.EVAL_PERIOD, self._evaluate)
        hooks[eval_at + 1:eval_at + 1] = [self.pseudo_label_hook, record]
        hooks.insert(0, TeacherEMAHook())
        return hooks

    @classmethod
    def build_labeler(cls, cfg, true_ids, cameras) -> Labeler:
        """This run's labeler (``pseudo_labels.build_labeler``); override it to train on labels of
        your own (``hooks.Labeler``). ``true_ids``: the target's identities, for controls only;
        ``cameras``: each target image's camera index (metadata, label-free: CA-Jaccard's)."""
        return build_labeler(cfg, true_ids, cameras)

    def _evaluate(self):
        """fast-reid's periodic evaluation, reading the cached test images."""
        start = time.perf_counter()
        self._last_eval_results = self.test(self.cfg, self.model, image_cache=self.image_cache)
        self.epoch_seconds["evaluation"] = time.perf_counter() - start
        return self._last_eval_results

    def resume_or_load(self, resume=True):
        """Loading may resize the classifiers (the checkpoint's cluster count): rebuild the
        optimiser, and under DDP the wrapper, over the loaded parameters."""
        super().resume_or_load(resume=resume)
        self._reset_optimizer(unwrap(self.model))

    # ------------------------------------------------------------------ hooks.AdaptationTrainer
    def extract_target_features(self) -> np.ndarray:
        return self._clustering_features(self.target_items, "target")

    def extract_source_features(self) -> np.ndarray:
        """Teacher features of the source train set (ABMT's source term; one more feature pass)."""
        return self._clustering_features(self.source_items, "source")

    def _clustering_features(self, items, domain: str) -> np.ndarray:
        """The teacher's eval features of ``items`` as the clustering sees them: camera-aware as
        ``SLR.CLUSTER.CAMERA_AWARE`` says (each camera's own BN statistics, or its mean removed).
        Its seconds go to ``epoch_seconds[f"features_{domain}"]`` (and per camera)."""
        method, start = self.cfg.SLR.CLUSTER.CAMERA_AWARE, time.perf_counter()
        description = f"teacher features of the {domain} train set"
        cameras = camera_indices(items)
        if method == "bn":
            per_camera = {}
            features = extract_features_per_camera_bn(
                unwrap(self.model), cameras, lambda rows: self.image_cache.batches(domain, items, rows), per_camera,
                description)
            self.epoch_seconds.update({f"features_{domain}/{k}": v for k, v in per_camera.items()})
        else:
            features = camera_normalized(extract_features(unwrap(self.model), self.image_cache.batches(domain, items),
                                                          len(items), description=description), cameras, method)
        self.epoch_seconds[f"features_{domain}"] = time.perf_counter() - start
        return features

    def train_labels_missing(self) -> bool:
        return isinstance(self._trainer.data_loader, _AwaitingPseudoLabels)

    def last_evaluation(self):
        """fast-reid's EvalHook's latest results (None before the first evaluation)."""
        return getattr(self, "_last_eval_results", None)

    def set_train_labels(self, labels, soft_labels=None, centroids=None):
        """Train on ``labels`` (-1 dropped) from now on: new loader; with ``centroids``, classifiers
        resized and initialised from them; a fresh optimiser over the new parameters."""
        model = unwrap(self.model)
        if centroids is not None:
            model.reset_classifiers(len(centroids), centroids.to(model.device))
        # fast-reid's samplers draw from numpy's global generator in the loader's prefetch thread:
        # stop the old one before the new sampler draws its seed, so a SEEDed run repeats.
        self._trainer.data_loader.shutdown()
        dataset = PseudoLabelledDataset(self.target_items, labels, build_transforms(self.cfg, is_train=True),
                                        soft_labels)
        loader = build_identity_loader(self.cfg, dataset)
        self._trainer.data_loader = loader
        self._trainer._data_loader_iter = iter(loader)
        self._reset_optimizer(model)

    def _reset_optimizer(self, model):
        fresh, _ = self.build_optimizer(self.cfg, model)
        optimizer = self._trainer.optimizer
        optimizer.state.clear()
        optimizer.param_groups.clear()
        for group in fresh.param_groups:
            optimizer.add_param_group(group)
        if comm.get_world_size() > 1:  # DDP must see the new classifier parameters
            self._trainer.model = distributed_data_parallel(
                model, device_ids=[comm.get_local_rank()], broadcast_buffers=False)


