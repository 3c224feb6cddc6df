"""The size and seed of a procedural dataset, and the default used when fast-reid builds one.

fast-reid constructs datasets as ``DATASET_REGISTRY.get(name)(root=...)`` without the config, so the
training setup reads the spec from the config once (``ProceduralSpec.from_config``) and installs it
with ``set_default_spec``; a dataset built without ``spec=`` uses that default.
"""
import dataclasses
import hashlib
import json
from typing import Tuple


@dataclasses.dataclass(frozen=True)
class ProceduralSpec:
    """Everything the images depend on: same spec (and renderer version) -> byte-identical files."""

    num_train_ids: int = 32
    num_test_ids: int = 32
    num_cameras: int = 4
    images_per_camera: int = 3
    image_size: Tuple[int, int] = (64, 32)  # (height, width) of the written images
    seed: int = 0
    # Most cameras one identity is seen by (0: num_cameras); each sees 2..this many, drawn per identity.
    max_cameras_per_id: int = 0
    # 0..1: how strongly backdrop, light and blur follow the camera rather than the image (0: the
    # renderer's mild cameras; 1: each camera one backdrop family, its own light and blur, little
    # per-image spread around them), for data whose cameras dominate the picture.
    camera_dominance: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        if self.num_train_ids < 1 or self.num_test_ids < 1:
            raise ValueError(f"need at least one train and one test identity, got {self}")
        if self.num_cameras < 2:
            raise ValueError(f"every identity must be seen by two cameras: num_cameras >= 2, "
                             f"got {self}")
        if self.images_per_camera < 1:
            raise ValueError(f"images_per_camera must be >= 1, got {self}")
        if self.max_cameras_per_id != 0 and not 2 <= self.max_cameras_per_id <= self.num_cameras:
            raise ValueError(f"max_cameras_per_id is 0 (all) or in 2..num_cameras, got {self}")
        if not 0.0 <= self.camera_dominance <= 1.0:
            raise ValueError(f"camera_dominance lies in [0, 1], got {self}")
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise ValueError(f"image_size is (height, width), each >= 16 pixels, "
                             f"got {self.image_size}")

    @classmethod
    def from_config(cls, cfg) -> "ProceduralSpec":
        """Read ``cfg.DATASETS.PROCEDURAL`` (keys added by ``add_procedural_config``)."""
        p = cfg.DATASETS.PROCEDURAL
        return cls(num_train_ids=p.NUM_TRAIN_IDS, num_test_ids=p.NUM_TEST_IDS,
                   num_cameras=p.NUM_CAMERAS, images_per_camera=p.IMAGES_PER_CAMERA,
                   image_size=tuple(p.IMAGE_SIZE), seed=p.SEED, max_cameras_per_id=p.MAX_CAMERAS_PER_ID,
                   camera_dominance=p.CAMERA_DOMINANCE)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self, domain: str, renderer_version: int) -> str:
        """Short hash naming the cache directory; a renderer change must not reuse old images."""
        key = json.dumps({"spec": self.to_dict(), "domain": domain, "renderer": renderer_version},
                         sort_keys=True)
        return hashlib.sha1(key.encode()).hexdigest()[:12]


_default_spec = ProceduralSpec()


def set_default_spec(spec: ProceduralSpec) -> None:
    """Install the spec used by datasets constructed without ``spec=`` (fast-reid passes none)."""
    global _default_spec
    if not isinstance(spec, ProceduralSpec):
        raise TypeError(f"expected a ProceduralSpec, got {type(spec).__name__}")
    _default_spec = spec


def get_default_spec() -> ProceduralSpec:
    return _default_spec
