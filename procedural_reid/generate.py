"""Planning the splits of one domain and writing its images once into a cache directory.

Every random draw comes from its own generator seeded by (seed, domain, purpose, ...), so an
image depends only on the spec and its own identity/camera/index, never on generation order.
"""
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Iterator, List

import numpy as np
from PIL import Image

from . import render
from .spec import ProceduralSpec

logger = logging.getLogger(__name__)

# Bump whenever a change to the renderer or the plan changes any pixel: it is part of the cache key.
RENDERER_VERSION = 4
SPLITS = ("bounding_box_train", "query", "bounding_box_test")
DOMAINS = ("A", "B")
_IDENTITY, _CAMERA, _PLAN, _IMAGE, _DISTRACTOR = range(5)


@dataclasses.dataclass(frozen=True)
class Shot:
    """One image to render: ``pid`` 0 is a distractor (a passer-by seen once, in the gallery)."""

    split: str
    pid: int
    cam: int  # 0-based
    index: int  # running number, unique within the domain; the Market frame field


def _rng(spec: ProceduralSpec, domain: str, *key: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, DOMAINS.index(domain), *key])


def plan(spec: ProceduralSpec, domain: str) -> List[Shot]:
    """Market-style splits.

    Train pids are 1..num_train_ids, test pids follow; each identity is seen by 2..num_cameras
    (or ``max_cameras_per_id``) cameras with ``images_per_camera`` images each. A test identity gives one query per camera
    that sees it (when it has a single image per camera, one of its cameras keeps its image for
    the gallery), so every query has a gallery match in another camera. One distractor per test
    identity joins the gallery.
    """
    rng = _rng(spec, domain, _PLAN)
    shots: List[Shot] = []
    num_ids = spec.num_train_ids + spec.num_test_ids
    for pid in range(1, num_ids + 1):
        most = spec.max_cameras_per_id or spec.num_cameras
        cams = np.sort(rng.choice(spec.num_cameras, size=rng.integers(2, most + 1), replace=False))
        if pid <= spec.num_train_ids:
            for c in cams:
                for _ in range(spec.images_per_camera):
                    shots.append(Shot("bounding_box_train", pid, int(c), len(shots)))
            continue
        query_cams = set(cams.tolist())
        if spec.images_per_camera == 1:
            query_cams.discard(int(rng.choice(cams)))
        for c in cams:
            query_k = int(rng.integers(spec.images_per_camera)) if c in query_cams else -1
            for k in range(spec.images_per_camera):
                split = "query" if k == query_k else "bounding_box_test"
                shots.append(Shot(split, pid, int(c), len(shots)))
    for _ in range(spec.num_test_ids):
        shots.append(Shot("bounding_box_test", 0, int(rng.integers(spec.num_cameras)), len(shots)))
    return shots


def identity(spec: ProceduralSpec, domain: str, pid: int) -> render.Identity:
    """The person behind ``pid`` in ``domain``: the same pid is a different person in each."""
    return render.sample_identity(_rng(spec, domain, _IDENTITY, pid), render.DOMAIN_STYLES[domain])


def file_name(shot: Shot) -> str:
    return f"{shot.pid:04d}_c{shot.cam + 1}s1_{shot.index:06d}_00.png"


def write_domain(directory: str, spec: ProceduralSpec, domain: str, name: str) -> None:
    """Render every shot of ``domain`` into ``directory`` (which must exist and be empty)."""
    style = render.DOMAIN_STYLES[domain]
    shots = plan(spec, domain)
    cameras = [render.sample_camera(_rng(spec, domain, _CAMERA, c), style, c, spec.image_size,
                                    spec.camera_dominance) for c in range(spec.num_cameras)]
    identities = {}
    for split in SPLITS:
        os.makedirs(os.path.join(directory, split))
    start, step = time.time(), max(1, len(shots) // 10)
    for i, shot in enumerate(shots):
        if shot.pid == 0:  # every distractor is a different passer-by
            ident = render.sample_identity(_rng(spec, domain, _DISTRACTOR, shot.index), style)
        else:
            if shot.pid not in identities:
                identities[shot.pid] = identity(spec, domain, shot.pid)
            ident = identities[shot.pid]
        image = render.render(ident, cameras[shot.cam], style,
                              _rng(spec, domain, _IMAGE, shot.index), spec.image_size)
        Image.fromarray(image).save(os.path.join(directory, shot.split, file_name(shot)),
                                    format="PNG", compress_level=6)
        if (i + 1) % step == 0 or i + 1 == len(shots):
            logger.info("%s: rendered %d/%d images (%.1f s)", name, i + 1, len(shots),
                        time.time() - start)
    with open(os.path.join(directory, "spec.json"), "w") as f:
        json.dump({"domain": domain, "renderer_version": RENDERER_VERSION, **spec.to_dict()}, f,
                  indent=1, sort_keys=True)


def _check_root(root: str, name: str) -> None:
    hint = (f"Datasets are read from $FASTREID_DATASETS "
            f"(now {os.environ.get('FASTREID_DATASETS', '<unset>, so ./datasets')}).")
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Dataset {name} renders its images under the datasets root, but "
            f"{os.path.abspath(root)} is not a directory. Create it or point $FASTREID_DATASETS "
            f"at a writable directory. {hint}")
    if not os.access(root, os.W_OK | os.X_OK):
        raise PermissionError(
            f"Dataset {name} must render its images once under {os.path.abspath(root)}, which is "
            f"not writable. Make it writable, or generate the cache elsewhere and point "
            f"$FASTREID_DATASETS there. {hint}")


@contextlib.contextmanager
def _exclusive(lock_path: str) -> Iterator[None]:
    """Serialise generation across processes (DDP ranks) so only one renders."""
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_generated(root: str, spec: ProceduralSpec, domain: str, name: str) -> str:
    """Return ``<root>/procedural/<domain>_<hash>``, rendering it first if it is not there.

    Rendering goes to a temporary directory renamed into place when complete, so a crash never
    leaves a half-written cache; a lock makes other processes wait instead of rendering too, and
    if the target appears anyway (a filesystem without locks) the extra copy is discarded.
    """
    base = os.path.join(root, "procedural")
    target = os.path.join(base, f"{domain}_{spec.digest(domain, RENDERER_VERSION)}")
    if os.path.isdir(target):
        return target
    _check_root(root, name)
    os.makedirs(base, exist_ok=True)
    with _exclusive(target + ".lock"):
        if os.path.isdir(target):
            return target
        logger.info("%s: rendering %s into %s", name, spec, target)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", dir=base)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide a shared cache from other users
        try:
            write_domain(tmp, spec, domain, name)
            os.rename(tmp, target)
        except OSError:
            if not os.path.isdir(target):
                raise
        finally:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp)
    return target
