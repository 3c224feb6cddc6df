"""Camera-aware clustering features (SLR.CLUSTER.CAMERA_AWARE): what a camera adds to all of its
images is removed, label-free, from the features the clustering sees, and from nothing else."""
import copy
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fastreid.data.transforms import build_transforms
from fastreid_slr.engine import SLRTrainer, check_adaptation_config, ensure_source_weights
from fastreid_slr.engine.camera_bn import camera_indices, extract_features_per_camera_bn
from fastreid_slr.data.loaders import build_feature_loader
from fastreid_slr.engine.features import extract_features
from slr_refine import camera_normalized
from tiny import tiny_baseline_cfg, tiny_slr_cfg


def _people_in_cameras(ids=30, cameras=3, per_camera=2, dim=32, offset=3.0, seed=0):
    """Unit identity directions, plus a large offset per camera, plus a little per-image noise."""
    rng = np.random.default_rng(seed)
    people = rng.normal(size=(ids, dim))
    people /= np.linalg.norm(people, axis=1, keepdims=True)
    shifts = offset * rng.normal(size=(cameras, dim)) / np.sqrt(dim)
    pid = np.repeat(np.arange(ids), cameras * per_camera)
    cam = np.tile(np.repeat(np.arange(cameras), per_camera), ids)
    features = people[pid] + shifts[cam] + 0.1 * rng.normal(size=(len(pid), dim))
    return features.astype(np.float32), pid, cam


def _nearest_is_same_person_elsewhere(features, pid, cam):
    sim = features @ features.T
    sim[cam[:, None] == cam[None, :]] = -np.inf  # the nearest among the other cameras' images
    return float((pid[sim.argmax(1)] == pid).mean())


def test_centring_finds_people_across_cameras_that_the_blind_features_miss():
    features, pid, cam = _people_in_cameras()
    blind = camera_normalized(features, cam, "none")
    centred = camera_normalized(features, cam, "centre")
    normalised = blind / np.linalg.norm(blind, axis=1, keepdims=True)
    assert _nearest_is_same_person_elsewhere(normalised, pid, cam) < 0.5
    assert _nearest_is_same_person_elsewhere(centred, pid, cam) > 0.95
    np.testing.assert_allclose(np.linalg.norm(centred, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("method", ["centre", "standardize"])
def test_each_method_removes_exactly_what_it_claims(method):
    """centre: blind to a per-camera offset; standardize: also to a per-camera scale of each dimension."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(40, 8)).astype(np.float32)
    cam = np.repeat([0, 1], 20)
    offset = np.where(cam[:, None] == 1, rng.normal(size=8) * 5, 0.0)
    scale = np.where(cam[:, None] == 1, rng.uniform(0.5, 2.0, size=8), 1.0) if method == "standardize" else 1.0
    distorted = (base * scale + offset).astype(np.float32)
    reference = np.concatenate([camera_normalized(base[cam == c], np.zeros(20), method) for c in (0, 1)])
    np.testing.assert_allclose(camera_normalized(distorted, cam, method), reference, atol=1e-5)
    assert not np.allclose(camera_normalized(distorted, cam, "none"), camera_normalized(base, cam, "none"))


def test_a_camera_with_one_image_keeps_its_direction_and_bad_input_is_refused():
    features = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    out = camera_normalized(features, np.array([7, 1, 1]), "centre")
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-6)
    with pytest.raises(ValueError, match="one camera id per feature row"):
        camera_normalized(features, np.array([0, 1]), "centre")
    with pytest.raises(ValueError, match="must be one of"):
        camera_normalized(features, np.array([0, 1, 1]), "whiten")


class _ConvBN(nn.Module):
    """1x1 convolution then BN, averaged over the image: a constant added to every pixel of an
    image reaches the BN as a per-channel constant."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6))

    def forward(self, batch):
        return self.net(batch["images"]).mean((2, 3))


def _two_cameras_of_the_same_scenes(folder, images=12, brightening=60):
    """Camera 2 sees camera 1's scenes ``brightening`` grey levels brighter (as a camera's light would)."""
    rng = np.random.default_rng(0)
    items = []
    for k in range(images):
        scene = rng.integers(40, 150, size=(8, 4, 3))
        for camera, shift in ((1, 0), (2, brightening)):
            path = os.path.join(folder, f"{k:04d}_c{camera}.png")
            Image.fromarray((scene + shift).astype(np.uint8)).save(path)
            items.append((path, f"set_{k}", f"set_{camera}"))
    return items


def test_per_camera_bn_removes_a_cameras_light_and_leaves_the_model_as_it_was(tmp_path):
    items = _two_cameras_of_the_same_scenes(str(tmp_path))
    cameras = camera_indices(items)
    transforms = build_transforms(tiny_baseline_cfg(**{"INPUT.SIZE_TEST": [8, 4]}), is_train=False)
    model = _ConvBN().eval()
    model.net[1].running_mean.fill_(0.3)  # statistics from "training", which the call must not touch
    before = copy.deepcopy(model.state_dict())

    seconds = {}
    aware = extract_features_per_camera_bn(
        model, cameras, lambda rows: build_feature_loader([items[i] for i in rows], transforms, 5), seconds)
    assert sorted(seconds) == ["camera_0", "camera_1"]
    blind = extract_features(model, build_feature_loader(items, transforms, 5), len(items))
    # the same scene in both cameras: identical with each camera's own statistics, not without them
    np.testing.assert_allclose(aware[cameras == 0], aware[cameras == 1], atol=1e-4)
    assert np.abs(blind[cameras == 0] - blind[cameras == 1]).max() > 0.1
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])


@pytest.fixture
def trainer(source_weights, tmp_path):
    def build(method):
        os.makedirs(tmp_path / method)
        cfg = tiny_slr_cfg(tmp_path / method, os.path.dirname(source_weights),
                           **{"SLR.CLUSTER.CAMERA_AWARE": method})
        cfg.MODEL.WEIGHTS = ensure_source_weights(cfg)
        return SLRTrainer(cfg)
    return build


def test_the_trainer_clusters_camera_aware_features_and_its_teacher_keeps_its_statistics(trainer):
    blind_trainer = trainer("none")
    blind = blind_trainer.extract_target_features()
    cameras = camera_indices(blind_trainer.target_items)

    def camera_means(features):
        return np.linalg.norm([features[cameras == c].mean(0) for c in np.unique(cameras)], axis=1)

    centred = trainer("centre").extract_target_features()
    assert camera_means(centred).max() < 0.1 * camera_means(blind).min()
    bn_trainer = trainer("bn")
    before = copy.deepcopy(bn_trainer.model.state_dict())
    aware = bn_trainer.extract_target_features()
    assert aware.shape == blind.shape and not np.allclose(aware, blind, atol=1e-3)
    for key, value in bn_trainer.model.state_dict().items():  # the teacher's BN statistics above all
        torch.testing.assert_close(value, before[key])


def test_an_unknown_camera_method_fails_at_startup(tmp_path):
    cfg = tiny_slr_cfg(tmp_path / "out", tmp_path / "source", **{"SLR.CLUSTER.CAMERA_AWARE": "whiten"})
    with pytest.raises(ValueError, match="SLR.CLUSTER.CAMERA_AWARE"):
        check_adaptation_config(cfg)
