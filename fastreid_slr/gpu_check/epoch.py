"""The epoch part: whole stage-2 epochs, part by part (``records.EPOCH_PARTS``), and what a whole
d2m stage 2 would take on this machine.

Full mode: configs/SLR/d2m.yml as the paper trains it (dual ResNet-50, 256x128, batch 16, 400
iterations per epoch, its clustering) at Market-1501's scale on the procedural data, two epochs
from the pipeline part's stage-1 weights, each evaluated. Epoch 0 also decodes the image cache;
epoch 1 is the steady state every later epoch repeats. The tiny mode runs the same part on the
tiny data, in seconds: its numbers mean nothing, and its report says so.
"""
import time

from fastreid.engine.train_loop import HookBase

from ..data.paths import build_dataset
from ..engine import SLRTrainer
from ..engine.records import EPOCH_PARTS, RunRecord
from .context import DUKE_TRAIN_IMAGES, LOADER_WORKERS, PROCEDURAL_DATA
from .measuring import GpuMemory
from .part import Part, fmt
from .pipeline import adapt

# Market-1501's scale on the procedural data, in both domains: its 6 cameras, each identity seen by
# 2-6 of them with 4 images each (16 on average; Market: 17), so that 808 identities give about
# Market's 12,936 training images; its 750 test identities; images rendered at Market's 128x64.
MARKET_SCALE = {"DATASETS.PROCEDURAL.NUM_TRAIN_IDS": "808", "DATASETS.PROCEDURAL.NUM_TEST_IDS": "750",
                "DATASETS.PROCEDURAL.NUM_CAMERAS": "6", "DATASETS.PROCEDURAL.IMAGES_PER_CAMERA": "4",
                "DATASETS.PROCEDURAL.IMAGE_SIZE": "[128, 64]"}
# The pseudo-label step: an epoch's parts before its training steps (feature passes to refinement).
PSEUDO_LABEL_PARTS = EPOCH_PARTS[:EPOCH_PARTS.index("train")]
# The targets on a GPU: the step's seconds and its share of an epoch without evaluation (at most),
# and the feature passes' images/s as a share of the model's alone (the features part; at least).
TARGETS = {"pseudo_labels_s": 5.0, "pseudo_labels_share": 0.15, "feature_rate_of_model": 0.8}
TINY_NOTE = ("tiny CPU mode: a dual ResNet-18 at 32x16 on ~90 images per set; these numbers mean nothing "
             "(the full mode measures d2m at Market scale on a GPU)")


class EpochClock(HookBase):
    """Each epoch's wall-clock seconds, from its first hook to the next epoch's (the last epoch's: to
    the end of training): everything the epoch did, its checkpoint and loader rebuild included."""

    def __init__(self):
        self.starts, self.end = [], None

    def before_epoch(self):
        self.starts.append(time.perf_counter())

    def after_train(self):
        self.end = time.perf_counter()

    def seconds(self) -> list:
        bounds = self.starts + [self.end]
        return [later - earlier for earlier, later in zip(bounds, bounds[1:])]


class ClockedSLRTrainer(SLRTrainer):
    """``SLRTrainer`` whose first hook is an ``EpochClock`` (``clock``)."""

    def build_hooks(self):
        self.clock = EpochClock()
        return [self.clock, *super().build_hooks()]


def epoch_config(context):
    """Two epochs, each evaluated, from stage 1's weights: d2m at Market scale (full), or the
    check's tiny config."""
    if context.full:
        base = context.load_config({**PROCEDURAL_DATA, **MARKET_SCALE, "DATALOADER.NUM_WORKERS": str(LOADER_WORKERS)})
    else:
        base = context.cfg
    cfg = context.stage2_config(base, "epoch")
    cfg.SOLVER.MAX_EPOCH = 2
    cfg.TEST.EVAL_PERIOD = 1
    return cfg


def top_parts(seconds: dict) -> dict:
    """An epoch's seconds by part, without the parts' shares (``features_target/camera_0``) and the
    whole (``epoch``)."""
    return {part: s for part, s in seconds.items() if "/" not in part and part != "epoch"}


def with_rest(recorded: dict, wall_s: float) -> dict:
    """An epoch's recorded seconds by part (in the order they are spent), with ``other`` (the rest of
    its wall-clock seconds) and ``epoch`` (its wall-clock seconds)."""
    known = {part: i for i, part in enumerate(EPOCH_PARTS)}
    ordered = sorted(recorded, key=lambda part: known.get(part.split("/")[0], len(known)))
    return {**{part: recorded[part] for part in ordered}, "other": wall_s - sum(top_parts(recorded).values()),
            "epoch": wall_s}


def stage2_estimate(steady: dict, decode_s: float, source_images: int, epochs: int, eval_period: int) -> dict:
    """A whole stage 2 from one steady epoch (``with_rest``'s): the image cache decoded once,
    ``epochs`` epochs without evaluation, fast-reid's evaluations (every ``eval_period`` epochs, and
    after the last), the source feature pass scaled to DukeMTMC's training images."""
    evaluation_s = steady.get("evaluation", 0.0)
    source_scale = DUKE_TRAIN_IMAGES / source_images if source_images else 1.0
    epoch_s = steady["epoch"] - evaluation_s + steady.get("features_source", 0.0) * (source_scale - 1)
    evaluations = -(-epochs // eval_period) if eval_period > 0 else 0
    seconds = decode_s + epochs * epoch_s + evaluations * evaluation_s
    return {"seconds": seconds, "hours": seconds / 3600, "epochs": epochs, "evaluations": evaluations,
            "epoch_s": epoch_s, "evaluation_s": evaluation_s, "decode_s": decode_s, "source_pass_scale": source_scale,
            "how": f"decode once ({decode_s:.1f} s) + {epochs} x the steady epoch without its evaluation "
                   f"({epoch_s:.1f} s; its source feature pass x {source_scale:.2f}: DukeMTMC's {DUKE_TRAIN_IMAGES} "
                   f"training images over the {source_images} measured) + {evaluations} x its evaluation "
                   f"({evaluation_s:.1f} s, on the measured test set)"}


class Epoch(Part):
    """Two stage-2 epochs; the steady one's seconds by part, the pseudo-label step's seconds and
    share, the feature passes' rate against the model alone's, the one-off decoding, and the
    estimate of a whole d2m stage 2 (its epochs and evaluation period, from the config file)."""

    name = "epoch"
    what = "a stage-2 epoch, part by part"

    def run(self, context) -> dict:
        cfg = epoch_config(context)
        with context.datasets_of(cfg):
            with GpuMemory(context.device) as memory:
                trainer, _ = adapt(cfg, ClockedSLRTrainer)
            test_images = sum(len(data.query) + len(data.gallery) for data in map(build_dataset, cfg.DATASETS.TESTS))
        recorded = RunRecord.read(cfg.OUTPUT_DIR).seconds()
        first, steady = (with_rest(recorded[e], wall_s) for e, wall_s in enumerate(trainer.clock.seconds()))
        images = {"target": len(trainer.target_items), "source": len(trainer.source_items), "test": test_images}
        pseudo_labels_s = sum(steady.get(part, 0.0) for part in PSEUDO_LABEL_PARTS)
        feature_images_per_s = ((images["target"] + images["source"])
                                / (steady["features_target"] + steady.get("features_source", 0.0)))
        model_images_per_s = context.results.get("features", {}).get("model_only_images_per_s")
        paper = context.load_config({})
        result = {
            "images": images, "first_epoch_seconds": first, "steady_seconds": steady,
            "shares": {part: s / steady["epoch"] for part, s in top_parts(steady).items()},
            "pseudo_labels_s": pseudo_labels_s,
            "pseudo_labels_share": pseudo_labels_s / (steady["epoch"] - steady.get("evaluation", 0.0)),
            "feature_images_per_s": feature_images_per_s, "model_only_images_per_s": model_images_per_s,
            "feature_rate_of_model": feature_images_per_s / model_images_per_s if model_images_per_s else None,
            "decode_s": trainer.image_cache.seconds_decoding,
            "stage2_estimate": stage2_estimate(steady, trainer.image_cache.seconds_decoding, images["source"],
                                               paper.SOLVER.MAX_EPOCH, paper.TEST.EVAL_PERIOD),
            "peak_gpu_memory_gb": memory.peak_gb, "note": None if context.full else TINY_NOTE}
        result["meets_targets"] = {
            "pseudo_labels_s": pseudo_labels_s <= TARGETS["pseudo_labels_s"],
            "pseudo_labels_share": result["pseudo_labels_share"] <= TARGETS["pseudo_labels_share"],
            "feature_rate_of_model": (None if result["feature_rate_of_model"] is None
                                      else result["feature_rate_of_model"] >= TARGETS["feature_rate_of_model"])}
        return result

    def summary(self, result: dict) -> str:
        steady, images, estimate = result["steady_seconds"], result["images"], result["stage2_estimate"]
        parts = ", ".join(f"{part} {seconds:.2g}" for part, seconds in top_parts(steady).items())
        rate_of_model = "-" if result["feature_rate_of_model"] is None else f"{result['feature_rate_of_model']:.0%}"
        return (f"{images['target']} target + {images['source']} source images; steady epoch "
                f"{fmt(steady['epoch'], ' s')} ({parts}); pseudo-labels {fmt(result['pseudo_labels_s'], ' s')} "
                f"({result['pseudo_labels_share']:.0%} of an epoch without evaluation); feature passes "
                f"{fmt(result['feature_images_per_s'], ' img/s')} ({rate_of_model} of the model alone); decode once "
                f"{fmt(result['decode_s'], ' s')}; a d2m stage 2 here ~{fmt(estimate['hours'], ' h', 2)}"
                + (" (tiny mode: means nothing)" if result["note"] else ""))
