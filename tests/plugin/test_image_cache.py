"""Test-time images decoded once (SLR.IMAGE_CACHE): every pass from the cache gives the features, the
pseudo-labels and the evaluation the loader gives, within the budget it was given."""
import logging
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch

from fastreid.data.transforms import build_transforms
from fastreid_slr.data.image_cache import CachedBatches, ImageCache
from fastreid_slr.data.loaders import build_feature_loader
from fastreid_slr.engine import SLRTrainer, ensure_source_weights
from tiny import tiny_slr_cfg


@pytest.fixture
def trainer(source_weights, tmp_path):
    def build(name, **overrides):
        os.makedirs(tmp_path / name)
        cfg = tiny_slr_cfg(tmp_path / name, os.path.dirname(source_weights), **overrides)
        cfg.MODEL.WEIGHTS = ensure_source_weights(cfg)
        built = SLRTrainer(cfg)
        built.resume_or_load(resume=False)
        return built
    return build


@pytest.mark.parametrize("camera_aware", ["none", "bn"])
def test_cached_passes_give_the_loaders_features_labels_and_evaluation(trainer, camera_aware, caplog):
    with caplog.at_level(logging.INFO, logger="fastreid_slr.data.image_cache"):
        cached = trainer("cached", **{"SLR.CLUSTER.CAMERA_AWARE": camera_aware})
    loaded = trainer("loaded", **{"SLR.CLUSTER.CAMERA_AWARE": camera_aware, "SLR.IMAGE_CACHE.BUDGET_GB": 0})
    assert "Image cache (automatic budget" in caplog.text and "target (" in caplog.text
    assert not any(loaded.image_cache.planned.values())

    for domain in ("target", "source"):
        extract = f"extract_{domain}_features"
        # the same random draws after a pass either way (decoding once included): seeded runs repeat
        torch.manual_seed(7)
        from_cache, after_cache = getattr(cached, extract)(), torch.rand(3)
        torch.manual_seed(7)
        from_files, after_files = getattr(loaded, extract)(), torch.rand(3)
        assert torch.equal(after_cache, after_files)
        assert cached.image_cache.decoded[domain] is not None
        np.testing.assert_allclose(from_cache, from_files, rtol=0, atol=1e-6)
        assert "features_" + domain in cached.epoch_seconds
        if camera_aware == "bn":
            assert f"features_{domain}/camera_0" in cached.epoch_seconds
    labels = [t.pseudo_label_hook.labeler(t.extract_target_features(), t.extract_source_features()).labels
              for t in (cached, loaded)]
    np.testing.assert_array_equal(*labels)

    results = [t.test(t.cfg, t.model, image_cache=t.image_cache) for t in (cached, loaded)]
    assert cached.image_cache.decoded["test ProceduralB"] is not None
    assert results[0]["mAP"] == pytest.approx(results[1]["mAP"], abs=1e-6)
    assert results[0]["Rank-1"] == pytest.approx(results[1]["Rank-1"], abs=1e-6)


def _items_and_transforms(source_weights):
    cfg = tiny_slr_cfg("unused", os.path.dirname(source_weights))
    from fastreid_slr.data.loaders import load_train_items

    return load_train_items(cfg.DATASETS.NAMES), build_transforms(cfg, is_train=False)


def test_a_subset_is_an_index_into_the_cache_in_the_loaders_batches(source_weights):
    items, transforms = _items_and_transforms(source_weights)
    cache = ImageCache(transforms, batch_size=8, num_workers=0, device="cpu", budget_bytes=None)
    cache.plan(OrderedDict(target=len(items)), image_bytes=3 * 32 * 16)
    rows = np.arange(3, len(items), 5)
    batches = cache.batches("target", items, rows)
    assert isinstance(batches, CachedBatches)
    expected = list(build_feature_loader([items[i] for i in rows], transforms, 8))
    got = list(batches)
    assert [len(b["images"]) for b in got] == [len(b["images"]) for b in expected]
    for mine, theirs in zip(got, expected):
        assert mine["images"].dtype == torch.float32 and torch.equal(mine["images"], theirs["images"])
        assert mine["img_paths"] == theirs["img_paths"] and mine["targets"] == theirs["targets"]
    assert cache.decoded["target"].images.dtype == torch.uint8


def test_the_budget_keeps_sets_in_order_of_use_and_reads_the_rest_from_files(source_weights, caplog):
    items, transforms = _items_and_transforms(source_weights)
    image = 3 * 32 * 16
    cache = ImageCache(transforms, batch_size=8, num_workers=0, device="cpu", budget_bytes=len(items) * image + 1)
    with caplog.at_level(logging.INFO, logger="fastreid_slr.data.image_cache"):
        cache.plan(OrderedDict([("target", len(items)), ("source", len(items))]), image_bytes=image)
    assert cache.planned == {"target": True, "source": False}
    assert "read through the loader: source" in caplog.text and "SLR.IMAGE_CACHE.BUDGET_GB" in caplog.text
    assert not isinstance(cache.batches("source", items), CachedBatches)


def test_a_transform_without_uint8_values_is_not_cached(source_weights, caplog):
    items, transforms = _items_and_transforms(source_weights)

    def halved(image):
        return transforms(image) / 2 + 0.25

    cache = ImageCache(halved, batch_size=8, num_workers=0, device="cpu", budget_bytes=None)
    cache.plan(OrderedDict([("target", len(items)), ("source", 10)]), image_bytes=3 * 32 * 16)
    with caplog.at_level(logging.WARNING, logger="fastreid_slr.data.image_cache"):
        batches = cache.batches("target", items)
    assert not isinstance(batches, CachedBatches) and "does not give integers 0..255" in caplog.text
    assert not any(cache.planned.values())
    first = next(iter(batches))["images"]
    assert not torch.equal(first, first.round())


def test_a_bad_budget_is_refused(source_weights):
    cfg = tiny_slr_cfg("unused", os.path.dirname(source_weights), **{"SLR.IMAGE_CACHE.BUDGET_GB": -2})
    with pytest.raises(ValueError, match="SLR.IMAGE_CACHE.BUDGET_GB must be -1"):
        ImageCache.from_config(cfg, None)


def test_indices_must_keep_the_sets_order(source_weights):
    items, transforms = _items_and_transforms(source_weights)
    cache = ImageCache(transforms, batch_size=8, num_workers=0, device="cpu", budget_bytes=0)
    cache.plan(OrderedDict(target=len(items)), image_bytes=3 * 32 * 16)
    with pytest.raises(ValueError, match="strictly increasing"):
        cache.batches("target", items, [3, 1])
    with pytest.raises(ValueError, match="strictly increasing"):
        cache.batches("target", items, [1, 1, 2])
