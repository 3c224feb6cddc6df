"""The procedural two-domain dataset: registered, deterministic, Market-shaped, cached once,
two measurably different styles, and an identity signal in the pixels."""
import collections
import itertools
import os
import re
import threading

import numpy as np
import pytest
from PIL import Image

import fastreid_slr  # noqa: F401  (compat patches before fastreid.data)
from fastreid.data.datasets import DATASET_REGISTRY
from procedural_reid import (ProceduralA, ProceduralB, ProceduralSpec, add_procedural_config, apply_procedural_config,
                             ensure_generated, generate, get_default_spec, plan, render, set_default_spec)

SMALL = ProceduralSpec(num_train_ids=8, num_test_ids=10, num_cameras=3, images_per_camera=2)
_MARKET_NAME = re.compile(r"^(\d{4})_c(\d+)s1_(\d{6})_00\.png$")


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    """Both domains of SMALL rendered once for the module."""
    root = tmp_path_factory.mktemp("datasets")
    ProceduralA(root=str(root), spec=SMALL, verbose=False)
    ProceduralB(root=str(root), spec=SMALL, verbose=False)
    return str(root)


def _files(directory):
    out = {}
    for dirpath, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = f.read()
    return out


def _pixels(items):
    return [np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
            for path, _, _ in items]


def test_registered_under_both_names():
    assert DATASET_REGISTRY.get("ProceduralA") is ProceduralA
    assert DATASET_REGISTRY.get("ProceduralB") is ProceduralB


def test_same_spec_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    for r in ("r1", "r2", "r3"):
        (tmp_path / r).mkdir()
    dirs = [ensure_generated(str(tmp_path / r), SMALL, "A", "ProceduralA") for r in ("r1", "r2")]
    first, second = _files(dirs[0]), _files(dirs[1])
    assert len(first) > 100 and first == second
    reseeded = ProceduralSpec(**{**SMALL.to_dict(), "seed": 1})
    other = _files(ensure_generated(str(tmp_path / "r3"), reseeded, "A", "ProceduralA"))
    pngs = {k: v for k, v in first.items() if k.endswith(".png")}
    assert sum(other.get(k) == v for k, v in pngs.items()) == 0


@pytest.mark.parametrize("cls", [ProceduralA, ProceduralB])
def test_market_style_splits(small_root, cls):
    data = cls(root=small_root, spec=SMALL, verbose=False)
    name = cls.dataset_name
    for path, _, _ in data.train + data.query + data.gallery:
        assert _MARKET_NAME.match(os.path.basename(path)), path

    # Train: string labels as fast-reid's Market, true ids kept aligned, every id in >= 2 cameras.
    assert all(pid == f"{name}_{t}" for (_, pid, _), t in zip(data.train, data.train_true_pids))
    train_cams = collections.defaultdict(collections.Counter)
    for (_, _, cam), pid in zip(data.train, data.train_true_pids):
        train_cams[pid][int(cam.rsplit("_", 1)[1])] += 1
    assert sorted(train_cams) == list(range(1, SMALL.num_train_ids + 1))
    for counts in train_cams.values():
        assert len(counts) >= 2 and set(counts.values()) == {SMALL.images_per_camera}

    # Test: disjoint from train, int 0-based cameras, Market's one query per (id, camera).
    query_pids = {pid for _, pid, _ in data.query}
    assert len(query_pids) == SMALL.num_test_ids and not query_pids & set(train_cams)
    assert collections.Counter((pid, cam) for _, pid, cam in data.query).most_common(1)[0][1] == 1
    for _, pid, cam in data.query + data.gallery:
        assert isinstance(pid, int) and isinstance(cam, int) and 0 <= cam < SMALL.num_cameras
    gallery = collections.defaultdict(set)
    for _, pid, cam in data.gallery:
        gallery[pid].add(cam)
    for _, pid, cam in data.query:
        assert gallery[pid] - {cam}, f"query {pid} cam {cam} has no cross-camera match"
    distractors = [g for g in data.gallery if g[1] == 0]
    assert len(distractors) == SMALL.num_test_ids and 0 not in query_pids
    per_id = SMALL.num_cameras * SMALL.images_per_camera
    assert len(data.query) + len(data.gallery) - len(distractors) <= SMALL.num_test_ids * per_id


@pytest.mark.parametrize("images_per_camera", [1, 2])
def test_every_query_has_a_cross_camera_match_in_the_plan(images_per_camera):
    spec = ProceduralSpec(num_train_ids=5, num_test_ids=40, num_cameras=2,
                          images_per_camera=images_per_camera)
    shots = plan(spec, "B")
    for q in (s for s in shots if s.split == "query"):
        assert any(g.pid == q.pid and g.cam != q.cam for g in shots
                   if g.split == "bounding_box_test")
    assert len({s.index for s in shots}) == len(shots)


def test_domains_have_different_people_and_images(small_root):
    a = ProceduralA(root=small_root, spec=SMALL, verbose=False)
    b = ProceduralB(root=small_root, spec=SMALL, verbose=False)
    assert a.dataset_dir != b.dataset_dir and a.dataset_name != b.dataset_name
    a_bytes = set(_files(a.dataset_dir).values())
    assert not any(v in a_bytes for k, v in _files(b.dataset_dir).items() if k.endswith(".png"))
    # The same pid is a different person in the two domains: different clothing draws.
    people_a = [generate.identity(SMALL, "A", pid) for pid in range(1, 19)]
    people_b = [generate.identity(SMALL, "B", pid) for pid in range(1, 19)]
    assert sum(np.allclose(x.upper, y.upper) for x, y in zip(people_a, people_b)) == 0


def test_domain_styles_differ_measurably(small_root):
    """A is brighter, more saturated and sharper than B, on every image statistic's mean."""
    stats = {}
    for cls in (ProceduralA, ProceduralB):
        imgs = np.stack(_pixels(cls(root=small_root, spec=SMALL, verbose=False).train))
        grey = imgs.mean(axis=3)
        stats[cls.domain] = dict(
            brightness=imgs.mean(),
            saturation=(imgs.max(axis=3) - imgs.min(axis=3)).mean(),
            # Sharpness: mean absolute second difference, minus what sensor noise alone adds.
            edges=np.abs(grey[:, 2:, :] - 2 * grey[:, 1:-1, :] + grey[:, :-2, :]).mean())
    a, b = stats["A"], stats["B"]
    assert a["brightness"] > b["brightness"] + 0.1
    assert a["saturation"] > 1.5 * b["saturation"]
    assert a["edges"] > 1.2 * b["edges"]


@pytest.mark.parametrize("cls", [ProceduralA, ProceduralB])
def test_identity_signal_beats_chance(small_root, cls):
    """Mean colour of horizontal body stripes, grey-world normalised: rank-1 across cameras."""
    data = cls(root=small_root, spec=SMALL, verbose=False)

    def features(items):
        out = []
        for img in _pixels(items):
            centre = img[:, img.shape[1] * 3 // 8: img.shape[1] * 5 // 8]
            stripes = np.stack([s.reshape(-1, 3).mean(0) for s in np.array_split(centre, 8)])
            out.append((stripes / (img.reshape(-1, 3).mean(0) + 1e-3)).ravel())
        return np.stack(out)

    qf, gf = features(data.query), features(data.gallery)
    dist = ((qf[:, None] - gf[None]) ** 2).sum(-1)
    hits, chance = [], []
    for i, (_, pid, cam) in enumerate(data.query):
        allowed = np.array([not (p == pid and c == cam) for _, p, c in data.gallery])
        nearest = np.flatnonzero(allowed)[np.argmin(dist[i, allowed])]
        hits.append(data.gallery[nearest][1] == pid)
        chance.append(np.mean([p == pid for (_, p, _), ok in zip(data.gallery, allowed) if ok]))
    assert np.mean(hits) > 2.5 * np.mean(chance)


def test_cache_is_reused_not_regenerated(small_root, monkeypatch):
    first = ProceduralA(root=small_root, spec=SMALL, verbose=False)
    sample = first.train[0][0]
    stamp = os.stat(sample).st_mtime_ns, os.stat(first.dataset_dir).st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("regenerated an existing cache")

    monkeypatch.setattr(generate, "write_domain", fail)
    again = ProceduralA(root=small_root, spec=SMALL, verbose=False)
    assert again.train == first.train
    assert (os.stat(sample).st_mtime_ns, os.stat(again.dataset_dir).st_mtime_ns) == stamp


def test_concurrent_constructions_render_once(tmp_path, monkeypatch):
    spec = ProceduralSpec(num_train_ids=3, num_test_ids=3, num_cameras=2, images_per_camera=1)
    calls = []
    real = generate.write_domain
    monkeypatch.setattr(generate, "write_domain", lambda *a: (calls.append(a), real(*a)))
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        ensure_generated(str(tmp_path), spec, "A", "ProceduralA"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(results)) == 1 and len(results) == 3
    leftovers = [n for n in os.listdir(tmp_path / "procedural") if not n.endswith(".lock")]
    assert leftovers == [os.path.basename(results[0])]


def test_a_copy_finished_elsewhere_wins_and_ours_is_discarded(tmp_path, monkeypatch):
    """Without working locks (some network filesystems) another host may finish first."""
    spec = ProceduralSpec(num_train_ids=2, num_test_ids=2, num_cameras=2, images_per_camera=1)
    digest = spec.digest("A", generate.RENDERER_VERSION)
    target = os.path.join(tmp_path, "procedural", f"A_{digest}")
    real = generate.write_domain

    def racing(directory, *args):
        real(directory, *args)
        real_target = os.path.join(os.path.dirname(directory), os.path.basename(target))
        os.makedirs(os.path.join(real_target, "query"))  # the other host's finished copy

    monkeypatch.setattr(generate, "write_domain", racing)
    assert ensure_generated(str(tmp_path), spec, "A", "ProceduralA") == target
    assert os.listdir(target) == ["query"]
    assert sorted(os.listdir(tmp_path / "procedural")) == sorted(
        [os.path.basename(target), os.path.basename(target) + ".lock"])


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="FASTREID_DATASETS") as err:
        ProceduralA(root=str(tmp_path / "nowhere"), spec=SMALL)
    assert str(tmp_path / "nowhere") in str(err.value)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        ProceduralB(root=str(tmp_path / "a_file"), spec=SMALL)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_root_is_a_clear_error(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            ProceduralA(root=str(tmp_path), spec=SMALL)
    finally:
        tmp_path.chmod(0o700)


def test_spec_from_config_and_default_spec(small_root):
    from fastreid.config import get_cfg

    cfg = add_procedural_config(get_cfg())
    assert add_procedural_config(cfg) is cfg  # idempotent
    cfg.DATASETS.PROCEDURAL.NUM_TRAIN_IDS = SMALL.num_train_ids
    cfg.DATASETS.PROCEDURAL.NUM_TEST_IDS = SMALL.num_test_ids
    cfg.DATASETS.PROCEDURAL.NUM_CAMERAS = SMALL.num_cameras
    cfg.DATASETS.PROCEDURAL.IMAGES_PER_CAMERA = SMALL.images_per_camera
    cfg.DATASETS.PROCEDURAL.IMAGE_SIZE = list(SMALL.image_size)
    assert ProceduralSpec.from_config(cfg) == SMALL
    assert ProceduralSpec.from_config(add_procedural_config(get_cfg())) == ProceduralSpec()

    previous = get_default_spec()
    apply_procedural_config(cfg)
    try:  # fast-reid's own call: root only, no spec
        data = DATASET_REGISTRY.get("ProceduralB")(root=small_root, verbose=False)
        assert data.spec == SMALL and len(set(data.train_true_pids)) == SMALL.num_train_ids
    finally:
        set_default_spec(previous)
    with pytest.raises(ValueError, match="two cameras"):
        ProceduralSpec(num_cameras=1)


@pytest.mark.parametrize("cls", [ProceduralA, ProceduralB])
def test_nuisance_varies_per_image_more_than_per_camera(small_root, cls):
    """Light, framing and backdrop are drawn per image around the camera's mean: two images of one
    person in one camera are not near-duplicates (about as different as two in different cameras;
    with a fixed light, framing and backdrop per camera they differed about half as much), and
    brightness varies more within a camera than between cameras' means."""
    data = cls(root=small_root, spec=SMALL, verbose=False)
    items = [(path, int(str(pid).rsplit("_", 1)[-1]), int(str(cam).rsplit("_", 1)[-1]))
             for path, pid, cam in data.train + data.query + data.gallery]
    items = [item for item in items if item[1] != 0]  # distractors are seen once
    images = _pixels(items)
    same_camera, other_camera = [], []
    for i, j in itertools.combinations(range(len(items)), 2):
        if items[i][1] == items[j][1]:
            diff = np.abs(images[i] - images[j]).mean()
            (same_camera if items[i][2] == items[j][2] else other_camera).append(diff)
    assert np.median(same_camera) > 0.75 * np.median(other_camera)
    brightness = np.array([img.mean() for img in images])
    cams = np.array([cam for _, _, cam in items])
    within = np.mean([brightness[cams == c].std() for c in np.unique(cams)])
    between = np.std([brightness[cams == c].mean() for c in np.unique(cams)])
    assert within > between


def test_max_cameras_per_id_bounds_the_cameras_of_each_identity():
    spec = ProceduralSpec(num_train_ids=60, num_test_ids=10, num_cameras=8, images_per_camera=1,
                          max_cameras_per_id=5)
    cameras = collections.defaultdict(set)
    for shot in plan(spec, "B"):
        if shot.pid:
            cameras[shot.pid].add(shot.cam)
    counts = [len(c) for c in cameras.values()]
    assert min(counts) == 2 and max(counts) == 5
    assert len(set().union(*cameras.values())) == 8  # every camera is still used
    with pytest.raises(ValueError, match="max_cameras_per_id"):
        ProceduralSpec(num_cameras=4, max_cameras_per_id=5)


def _camera_share(dominance: float) -> float:
    """Between-camera over within-camera spread of the images' mean colour, domain B."""
    spec = ProceduralSpec(num_train_ids=12, num_test_ids=1, num_cameras=4, images_per_camera=3,
                          camera_dominance=dominance)
    style = render.DOMAIN_STYLES["B"]
    cameras = [render.sample_camera(generate._rng(spec, "B", generate._CAMERA, c), style, c, spec.image_size,
                                    dominance) for c in range(spec.num_cameras)]
    colour, cams = [], []
    for shot in plan(spec, "B"):
        if shot.split == "bounding_box_train":
            image = render.render(generate.identity(spec, "B", shot.pid), cameras[shot.cam], style,
                                  np.random.default_rng(shot.index), spec.image_size)
            colour.append(image.reshape(-1, 3).mean(0))
            cams.append(shot.cam)
    colour, cams = np.asarray(colour), np.asarray(cams)
    between = np.linalg.norm(np.std([colour[cams == c].mean(0) for c in range(spec.num_cameras)], axis=0))
    within = np.mean([np.linalg.norm(colour[cams == c].std(0)) for c in range(spec.num_cameras)])
    return between / within


def test_camera_dominance_moves_the_nuisance_from_the_image_to_the_camera():
    """CAMERA_DOMINANCE 1: the cameras' light and colour lie far apart and the images of one camera
    close together (the data the sweep's camera-dominated shape needs); 0 leaves the default data
    byte for byte as it was (the renderer's draws are unchanged)."""
    mild, dominant = _camera_share(0.0), _camera_share(1.0)
    assert mild < 1.0 < dominant
    assert dominant > 3 * mild
