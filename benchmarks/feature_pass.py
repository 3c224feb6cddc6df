"""A teacher feature pass three ways, side by side: fast-reid's test loader, the image cache, and the
model alone on batches already in memory (the upper bound).

    python benchmarks/feature_pass.py                  # demo and paper sizes, CPU, all cores, loader profile
    python benchmarks/feature_pass.py --images-demo 256 --images-paper 16 --repeats 1   # smoke run
    python benchmarks/feature_pass.py --device cuda --images-paper 4096                 # on a GPU machine

Every adaptation epoch passes the teacher over the same image sets (target, source, per camera,
test). Two sizes, each model built from its config through the plugin (eval mode: the teacher's
features): "demo", configs/Demo/slr-procedural.yml (slim dual backbone x1_0, 64x32), and "paper",
configs/Base-SLR.yml (dual ResNet-50, 256x128, no pretrained weights). The images are synthetic
Market-like 128x64 JPEGs (quality 95, smooth random content with some texture, so that decoding
costs what it costs on Market), written once to a temporary folder; items are the plugin's train
items ``(path, "bench_<pid>", "bench_<camid>")``. Each size's pass over its N images runs:

1. loader: ``extract_features`` over ``build_feature_loader`` (what every pass did before the
   cache): file read, PIL decode, bicubic resize, fast-reid's float ToTensor, ``fast_batch_collator``
   and the workers' IPC; building the loader and starting its workers are part of every pass, as
   in training;
2. cached: ``extract_features`` over ``ImageCache.batches``, the images decoded once beforehand
   (that one-off decode, through the same loader, is reported on its own and not in the pass);
3. model alone: ``extract_features`` over a list of the same float32 batches, pre-built in memory:
   the same code path with no data handling at all, so the ratios isolate what the data costs.

Fair timing: all three get the same intra-op threads (``--threads``, default all cores), the same
batch (``--batch``, TEST.IMS_PER_BATCH 128) and, where they use a loader, the same workers
(``--workers``; default each config's DATALOADER.NUM_WORKERS: 1 for the demo, 4 for the paper).
One warm-up forward of each batch shape comes first (the first forward of a shape allocates); then
the three passes run in turns (repeat 1 of each, then repeat 2, ...) so that a load change on a
shared machine hits them alike, ``--repeats`` times (default 3); the table gives each one's
median. The cached and loader passes must give the same features (max abs difference under 1e-6,
asserted). The project's target: cached >= 0.9 x model alone on the CPU at both sizes.

The loader profile (``--profile``, on by default) splits the loader path's per-image time at 256x128
(the paper's test transform), in this process on one intra-op thread (a loader worker's setting),
over ``--profile-images`` images already in the page cache, as a later epoch finds them: file read,
PIL decode (fast-reid's ``read_image`` less its file read), each step of
``build_transforms(cfg, is_train=False)`` (torchvision's bicubic Resize, fast-reid's float
ToTensor), ``fast_batch_collator`` on batches of ``--batch``, and pinning (only with CUDA; the main
process's pin thread does it, not a worker). From the workers' stages it gives the images/s one
worker could feed, and 4 (fast-reid's test loader default and the paper config's
DATALOADER.NUM_WORKERS) on 4 free cores; the workers' IPC (a float batch through shared memory)
and the prefetch thread come on top. On one H200 (16 CPU cores) the project measured 681 images/s
through fast-reid's test loader against 6,690 images/s for the model alone; the profile is how we
explain what bounded it.

Last line: ``cached_vs_model_demo=<x> cached_vs_model_paper=<y> max_feature_diff=<z>``;
``--json PATH`` writes every number.
"""
import argparse
import json
import os
import pathlib
import statistics
import tempfile
import time
import warnings
from collections import OrderedDict

import numpy as np
import torch
from PIL import Image

import fastreid_slr  # noqa: F401  (compat patches, registrations)
from fastreid.config import get_cfg
from fastreid.data.build import fast_batch_collator
from fastreid.data.data_utils import DataLoaderX, read_image
from fastreid.data.samplers import InferenceSampler
from fastreid.data.transforms import build_transforms
from fastreid.utils import comm
from fastreid_slr import add_run_config, add_slr_config
from fastreid_slr.data.image_cache import CachedBatches, ImageCache
from fastreid_slr.data.loaders import build_feature_loader
from fastreid_slr.engine import PluginTrainer
from fastreid_slr.engine.features import extract_features
from procedural_reid import add_procedural_config

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = {"demo": REPO / "configs" / "Demo" / "slr-procedural.yml", "paper": REPO / "configs" / "Base-SLR.yml"}
MARKET_SIZE = (128, 64)  # height, width of a Market-1501 image
JPEG_QUALITY = 95
FEATURE_TOLERANCE = 1e-6
PROFILE_WORKERS = 4  # fast-reid's test loader default, and the paper config's DATALOADER.NUM_WORKERS
DECODE = "PIL decode (read_image less its file read)"
PIN = "pin_memory (main process)"


def build_cfg(size, device, batch):
    cfg = get_cfg()
    for add_keys in (add_slr_config, add_run_config, add_procedural_config):
        add_keys(cfg)
    cfg.merge_from_file(str(CONFIGS[size]))
    cfg.merge_from_list(["MODEL.DEVICE", device, "MODEL.BACKBONE.PRETRAIN", "False", "TEST.IMS_PER_BATCH", batch])
    return cfg


def write_images(folder, count, seed=0):
    """``count`` Market-like JPEGs: a smooth upsampled colour field (background, body), a few
    uniform blocks (clothes, bags) and mild pixel noise (texture), as train items."""
    rng = np.random.default_rng(seed)
    height, width = MARKET_SIZE
    items = []
    for i in range(count):
        field = rng.integers(0, 256, size=(8, 4, 3), dtype=np.uint8)
        pixels = np.asarray(Image.fromarray(field).resize((width, height), Image.BICUBIC), dtype=np.float32)
        for _ in range(rng.integers(2, 6)):
            top, left = rng.integers(0, height - 16), rng.integers(0, width - 8)
            pixels[top:top + rng.integers(16, 64), left:left + rng.integers(8, 32)] = rng.integers(0, 256, 3)
        pixels += rng.normal(0, 6, pixels.shape)
        path = os.path.join(folder, f"{i // 16:04d}_c{i % 6 + 1}_{i:06d}.jpg")
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=JPEG_QUALITY)
        items.append((path, f"bench_{i // 16}", f"bench_{i % 6}"))
    return items


def measure_size(cfg, items, workers, repeats):
    """Seconds of each of the three passes per repeat, the one-off decode, and the largest
    difference between the cached and loader features."""
    torch.manual_seed(0)
    model = PluginTrainer.build_model(cfg)
    batch = cfg.TEST.IMS_PER_BATCH
    transforms = build_transforms(cfg, is_train=False)
    height, width = cfg.INPUT.SIZE_TEST
    cache = ImageCache(transforms, batch, workers, cfg.MODEL.DEVICE, budget_bytes=None)
    cache.plan(OrderedDict(bench=len(items)), image_bytes=3 * height * width)
    cached = cache.batches("bench", items)  # decodes every image once
    assert isinstance(cached, CachedBatches), "the image cache did not keep the benchmark's images"
    in_memory = list(cached)  # the model alone's float32 batches: built once, kept
    warm_up = in_memory[:1] + [b for b in in_memory[-1:] if len(b["images"]) != len(in_memory[0]["images"])]
    extract_features(model, warm_up, sum(len(b["images"]) for b in warm_up))
    passes = {"loader": lambda: build_feature_loader(items, transforms, batch, workers),
              "cached": lambda: cache.batches("bench", items),
              "model alone": lambda: in_memory}
    seconds, features = {name: [] for name in passes}, {}
    for _ in range(repeats):
        for name, batches in passes.items():
            start = time.perf_counter()
            features[name] = extract_features(model, batches(), len(items))
            seconds[name].append(time.perf_counter() - start)
    difference = float(np.abs(features["cached"] - features["loader"]).max())
    assert difference <= FEATURE_TOLERANCE, f"cached and loader features differ by {difference:.2e}"
    return seconds, cache.seconds_decoding, difference


def profile_loader(cfg, items, batch, repeats):
    """Median microseconds per image of each step of the loader path, in this process on one
    intra-op thread, as a loader worker runs them (pinning: the main process's pin thread)."""
    steps = [(f"{type(step).__module__.split('.')[0]} {type(step).__name__}", step)
             for step in build_transforms(cfg, is_train=False).transforms]
    collate = f"fast_batch_collator (batches of {batch})"
    pin = torch.cuda.is_available()

    def one_pass(images):
        totals, pending = dict.fromkeys(["file read", DECODE, *(label for label, _ in steps), collate], 0.0), []
        if pin:
            totals[PIN] = 0.0
        for index, (path, pid, camid) in enumerate(images):
            start = time.perf_counter()
            with open(path, "rb") as f:
                f.read()
            read = time.perf_counter() - start
            start = time.perf_counter()
            image = read_image(path)
            totals["file read"] += read
            totals[DECODE] += time.perf_counter() - start - read
            for label, step in steps:
                start = time.perf_counter()
                image = step(image)
                totals[label] += time.perf_counter() - start
            pending.append({"images": image, "targets": pid, "camids": camid, "img_paths": path})
            if len(pending) == batch or index == len(images) - 1:
                start = time.perf_counter()
                collated = fast_batch_collator(pending)
                totals[collate] += time.perf_counter() - start
                if pin:
                    start = time.perf_counter()
                    collated["images"].pin_memory()
                    totals[PIN] += time.perf_counter() - start
                pending = []
        return totals

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a DataLoader worker's setting
    try:
        one_pass(items[:batch])  # warm-up: first calls (lazy imports, allocator)
        runs = [one_pass(items) for _ in range(repeats)]
    finally:
        torch.set_num_threads(threads)
    return {stage: statistics.median(run[stage] for run in runs) / len(items) * 1e6 for stage in runs[0]}


class _ReadyImages(torch.utils.data.Dataset):
    """Items as a test loader's dataset gives them, the image already decoded and transformed."""

    def __init__(self, count, size):
        self.count, self.image = count, torch.rand(3, *size) * 255

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return {"images": self.image.clone(), "targets": 0, "camids": 0, "img_paths": str(index)}


def loader_without_decoding(batch, workers, count, size=(256, 128), repeats=3):
    """Images/s of fast-reid's test loader moving ready-made float images: its collation, the
    workers' shared-memory hand-over and the prefetch thread, with no file, decode or model."""
    dataset = _ReadyImages(count, size)
    rates = []
    for _ in range(repeats):
        loader = DataLoaderX(comm.get_local_rank(), dataset=dataset, num_workers=workers, pin_memory=True,
                             collate_fn=fast_batch_collator,
                             batch_sampler=torch.utils.data.BatchSampler(InferenceSampler(count), batch, False))
        start = time.perf_counter()
        for _ in loader:
            pass
        rates.append(count / (time.perf_counter() - start))
        loader.shutdown()
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-demo", type=int, default=4096)
    parser.add_argument("--images-paper", type=int, default=256,
                        help="a dual ResNet-50 at 256x128: a few images/s on 2 CPU cores")
    parser.add_argument("--batch", type=int, default=128, help="TEST.IMS_PER_BATCH of both sizes")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--workers", type=int, default=None,
                        help="loader workers of both sizes (default: each config's DATALOADER.NUM_WORKERS)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--profile-images", type=int, default=512)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    # fast-reid's ToTensor builds every image through the deprecated TypedStorage: a warning per worker
    warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
    torch.set_num_threads(args.threads)
    counts = {"demo": args.images_demo, "paper": args.images_paper}
    results, profile = {}, None
    with tempfile.TemporaryDirectory(prefix="feature_pass_") as folder:
        start = time.perf_counter()
        items = write_images(folder, max(*counts.values(), args.profile_images if args.profile else 0))
        print(f"{len(items)} synthetic {MARKET_SIZE[0]}x{MARKET_SIZE[1]} JPEGs (quality {JPEG_QUALITY}) written "
              f"in {time.perf_counter() - start:.1f}s", flush=True)
        for size, count in counts.items():
            cfg = build_cfg(size, args.device, args.batch)
            workers = cfg.DATALOADER.NUM_WORKERS if args.workers is None else args.workers
            seconds, decode_seconds, difference = measure_size(cfg, items[:count], workers, args.repeats)
            rates = {name: count / statistics.median(s) for name, s in seconds.items()}
            results[size] = {
                "config": str(CONFIGS[size].relative_to(REPO)), "input": list(cfg.INPUT.SIZE_TEST),
                "images": count, "batch": args.batch, "threads": args.threads, "workers": workers,
                "seconds": seconds, "images_per_s": rates, "decode_once_s": decode_seconds,
                "cached_vs_model": rates["cached"] / rates["model alone"],
                "loader_vs_model": rates["loader"] / rates["model alone"], "max_feature_diff": difference}
            print(f"{size}: " + ", ".join(f"{name} {rate:.1f} img/s" for name, rate in rates.items()), flush=True)
        if args.profile:
            profile = profile_loader(build_cfg("paper", args.device, args.batch), items[:args.profile_images],
                                     args.batch, args.repeats)
            moved = loader_without_decoding(args.batch, PROFILE_WORKERS, 2 * args.batch * PROFILE_WORKERS)
    print(f"\n{args.device}, median of {args.repeats} repeat(s)\n")
    print("| size | input | images | batch | threads | workers | loader img/s | cached img/s | model alone img/s "
          "| cached / model | loader / model | decode once s |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, r in results.items():
        rates = r["images_per_s"]
        print(f"| {size} | {r['input'][0]}x{r['input'][1]} | {r['images']} | {r['batch']} | {r['threads']} "
              f"| {r['workers']} | {rates['loader']:.1f} | {rates['cached']:.1f} | {rates['model alone']:.1f} "
              f"| {r['cached_vs_model']:.3f} | {r['loader_vs_model']:.3f} | {r['decode_once_s']:.2f} |")
    if profile is not None:
        worker = sum(micros for stage, micros in profile.items() if stage != PIN)
        print(f"\nLoader path per image at 256x128, one process on one thread, {args.profile_images} images "
              f"(median of {args.repeats}){'' if torch.cuda.is_available() else '; pin_memory skipped: no CUDA'}\n")
        print("| stage | us / image | share of a worker's |\n|---|---|---|")
        for stage, micros in profile.items():
            print(f"| {stage} | {micros:.1f} | {'' if stage == PIN else f'{micros / worker:.0%}'} |")
        print(f"| one worker's total | {worker:.1f} | 100% |")
        print(f"\none worker: {1e6 / worker:.0f} images/s at most; {PROFILE_WORKERS} workers on {PROFILE_WORKERS} "
              f"free cores: {PROFILE_WORKERS * 1e6 / worker:.0f} images/s (worker IPC and prefetch not included); "
              f"paper model alone here: {results['paper']['images_per_s']['model alone']:.1f} images/s")
        print(f"fast-reid's test loader moving ready-made 256x128 float images (no file, no decode, no model), "
              f"{PROFILE_WORKERS} workers: {moved:.0f} images/s")
    difference = max(r["max_feature_diff"] for r in results.values())
    if args.json:
        args.json.write_text(json.dumps({
            "device": args.device, "repeats": args.repeats, "sizes": results,
            "profile_us_per_image": profile, "profile_images": args.profile_images if profile else 0,
            "profile_pinned": torch.cuda.is_available(), "max_feature_diff": difference,
            "loader_without_decoding_images_per_s": moved if profile else None}, indent=1))
    print(f"cached_vs_model_demo={results['demo']['cached_vs_model']:.3f} "
          f"cached_vs_model_paper={results['paper']['cached_vs_model']:.3f} max_feature_diff={difference:.1e}")


if __name__ == "__main__":
    main()
