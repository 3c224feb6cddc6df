"""Drawing pedestrians from identity, camera and domain draws, with numpy and OpenCV only.

A person lives in body coordinates: ``v`` runs from the top of the head (0) to the soles (1) and
``u`` is horizontal, both in units of body height. Each image maps its pixels into body
coordinates (camera scale, offset, shear, aspect plus per-image jitter), so garment patterns move
and shear with the body. Parts are analytic shapes painted back to front at a supersampled
resolution, then the camera's light and the domain's lens/sensor style are applied.

What makes identities hard to tell apart: colours come from small palettes (many identities share
an upper or lower colour), each camera prefers one side of the body (a backpack is a patch from
behind and two straps from the front, a chest logo is invisible from behind), and every image
draws its own light, white balance, framing, backdrop, pose, blur and noise around its camera's
mean. The per-image spread is what keeps two images of one person in one camera from being
near-duplicates, and cameras whose means lie close together (in each domain, compared with the
per-image spread) keep one person's views in two cameras findable: with every camera a fixed
light, framing and backdrop, a network's nearest neighbour was the same camera far more often than
the same person. What makes the domains differ: colour priors of the clothing, light level and
colour cast, saturation, blur, sensor noise, background families and occlusion rate
(``DOMAIN_STYLES``).
"""
import dataclasses
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

VIEWS = ("front", "back", "left", "right")

PALETTE: Dict[str, Tuple[float, float, float]] = {
    "white": (0.92, 0.92, 0.90), "black": (0.10, 0.10, 0.11), "grey": (0.50, 0.50, 0.52),
    "light_grey": (0.72, 0.72, 0.74), "red": (0.80, 0.13, 0.12), "burgundy": (0.45, 0.08, 0.14),
    "pink": (0.93, 0.55, 0.66), "orange": (0.95, 0.52, 0.12), "yellow": (0.93, 0.83, 0.22),
    "green": (0.22, 0.60, 0.26), "dark_green": (0.12, 0.30, 0.16), "light_blue": (0.52, 0.70, 0.90),
    "blue": (0.15, 0.30, 0.76), "navy": (0.10, 0.12, 0.34), "purple": (0.46, 0.22, 0.60),
    "brown": (0.45, 0.30, 0.18), "beige": (0.82, 0.74, 0.58), "khaki": (0.60, 0.55, 0.38),
    "denim": (0.24, 0.34, 0.55), "light_denim": (0.50, 0.60, 0.76),
}
UPPER_COLOURS = ("white", "black", "grey", "light_grey", "red", "burgundy", "pink", "orange",
                 "yellow", "green", "dark_green", "light_blue", "blue", "navy", "purple", "brown",
                 "beige")
LOWER_COLOURS = ("black", "grey", "denim", "light_denim", "khaki", "brown", "white", "navy",
                 "beige", "dark_green")
PATTERNS = ("plain", "hstripes", "vstripes", "checks", "yoke", "logo")
PATTERN_P = (5, 2, 1.5, 1.5, 2, 2)
LOWER_TYPES = ("trousers", "shorts", "skirt")
BAGS = ("none", "backpack", "shoulder", "handbag")
SKIN = ((0.96, 0.80, 0.68), (0.87, 0.67, 0.52), (0.68, 0.49, 0.35), (0.45, 0.31, 0.22))
HAIR = ((0.06, 0.05, 0.05), (0.25, 0.16, 0.10), (0.45, 0.30, 0.17), (0.85, 0.72, 0.45),
        (0.62, 0.62, 0.62))
HAIR_P = (0.45, 0.25, 0.12, 0.10, 0.08)
SHOES = ("black", "white", "brown", "grey")
# Each camera has this many scenes; the first ``OWN_SCENES`` are of its own background family,
# the others of any family of its domain, and each image crops one of them at random.
SCENES_PER_CAMERA = 4
OWN_SCENES = 2
VIEW_FOCUS = 0.4  # probability of a camera's preferred view (the other three share the rest)


@dataclasses.dataclass(frozen=True)
class DomainStyle:
    """Priors of one domain: who walks there, and how its cameras see."""

    upper_weights: Tuple[float, ...]  # over UPPER_COLOURS
    lower_weights: Tuple[float, ...]  # over LOWER_COLOURS
    lower_type_p: Tuple[float, float, float]  # over LOWER_TYPES
    bag_p: Tuple[float, float, float, float]  # over BAGS
    long_sleeve_p: float
    hat_p: float
    gain: Tuple[float, float]  # range of the cameras' mean brightness
    contrast: Tuple[float, float]  # range of the cameras' mean contrast
    cast: Tuple[float, float, float]  # mean white-balance offset of the domain's cameras
    cast_jitter: float  # per-camera white-balance spread
    framing_spread: float  # how far the cameras' mean framing lies apart (1: wide)
    image_light: float  # per-image brightness spread (log gain sigma) around the camera's
    image_cast: float  # per-image white-balance spread around the camera's
    image_framing: float  # per-image framing spread (1: wide)
    saturation: float
    blur: float  # mean Gaussian sigma as a fraction of the image height (per image 0.6-1.4x)
    noise: float  # mean sensor noise sigma, in [0, 1] intensity units (per image 0.6-1.4x)
    occluder_p: float
    backgrounds: Tuple[str, ...]


DOMAIN_STYLES: Dict[str, DomainStyle] = {
    # Sunny outdoor campus: bright saturated clothes, warm light, sharp, clean sensor.
    "A": DomainStyle(
        upper_weights=(3, 1.5, 1, 1.5, 2, 0.5, 1.5, 1.5, 1.5, 1.5, 0.5, 1.5, 1.5, 0.5, 1, 0.5, 1),
        lower_weights=(2, 1, 2, 1.5, 1.5, 0.5, 1, 0.5, 1, 0.5),
        lower_type_p=(0.55, 0.30, 0.15), bag_p=(0.40, 0.25, 0.20, 0.15),
        long_sleeve_p=0.3, hat_p=0.15,
        gain=(0.95, 1.2), contrast=(0.95, 1.15), cast=(0.04, 0.01, -0.05), cast_jitter=0.07,
        framing_spread=1.0, image_light=0.12, image_cast=0.04, image_framing=1.0,
        saturation=1.0, blur=0.0, noise=0.012, occluder_p=0.08,
        backgrounds=("street", "park", "plaza")),
    # Overcast winter campus: dark clothes and coats, dim cool light, soft optics, noisy sensor.
    # Its cameras' means lie closer together than A's (light, white balance, framing), so that
    # what separates two images of one person is mostly the per-image spread, not the camera.
    "B": DomainStyle(
        upper_weights=(1, 3, 2, 1, 0.7, 1.5, 0.3, 0.3, 0.3, 0.7, 1.5, 0.5, 1, 2, 0.5, 1.5, 1),
        lower_weights=(3, 2, 2.5, 0.5, 0.7, 1, 0.3, 1.5, 0.5, 0.7),
        lower_type_p=(0.82, 0.04, 0.14), bag_p=(0.30, 0.40, 0.20, 0.10),
        long_sleeve_p=0.85, hat_p=0.30,
        gain=(0.75, 0.9), contrast=(0.85, 0.95), cast=(-0.04, 0.0, 0.05), cast_jitter=0.03,
        framing_spread=0.5, image_light=0.15, image_cast=0.04, image_framing=1.0,
        saturation=0.85, blur=0.01, noise=0.02, occluder_p=0.2,
        backgrounds=("brick", "corridor", "street", "fence")),
}


def _weights(w) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    return w / w.sum()


def _colour(rng: np.random.Generator, name: str, jitter: float = 0.05) -> np.ndarray:
    """A palette colour with a per-identity offset, so same-named colours differ slightly."""
    return np.clip(np.asarray(PALETTE[name]) + rng.uniform(-jitter, jitter, 3), 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Identity:
    """What stays the same across every image of one person."""

    upper: np.ndarray
    upper2: np.ndarray  # second colour of the pattern
    pattern: str
    period: float  # stripe/check period in body-height units
    long_sleeves: bool
    lower: np.ndarray
    lower_type: str
    skin: np.ndarray
    hair: np.ndarray
    long_hair: bool
    hat: Optional[np.ndarray]  # None when bare-headed
    bag: str
    bag_colour: np.ndarray
    bag_side: int  # +1 / -1: which side a shoulder bag or handbag hangs on
    shoes: np.ndarray
    width: float  # body width factor
    head: float  # head vertical radius
    hip: float  # v of the hips (leg length)


def sample_identity(rng: np.random.Generator, style: DomainStyle) -> Identity:
    upper_name = UPPER_COLOURS[rng.choice(len(UPPER_COLOURS), p=_weights(style.upper_weights))]
    second = rng.choice([c for c in UPPER_COLOURS if c != upper_name])
    hat = _colour(rng, UPPER_COLOURS[rng.integers(len(UPPER_COLOURS))]) \
        if rng.random() < style.hat_p else None
    return Identity(
        upper=_colour(rng, upper_name),
        upper2=_colour(rng, second),
        pattern=PATTERNS[rng.choice(len(PATTERNS), p=_weights(PATTERN_P))],
        period=float(rng.uniform(0.05, 0.1)),
        long_sleeves=bool(rng.random() < style.long_sleeve_p),
        lower=_colour(rng, LOWER_COLOURS[rng.choice(len(LOWER_COLOURS),
                                                    p=_weights(style.lower_weights))]),
        lower_type=LOWER_TYPES[rng.choice(3, p=_weights(style.lower_type_p))],
        skin=np.asarray(SKIN[rng.integers(len(SKIN))]) + rng.uniform(-0.03, 0.03, 3),
        hair=(np.asarray(HAIR[rng.choice(len(HAIR), p=_weights(HAIR_P))])
              + rng.uniform(-0.03, 0.03, 3)),
        long_hair=bool(rng.random() < 0.3),
        hat=hat,
        bag=BAGS[rng.choice(4, p=_weights(style.bag_p))],
        bag_colour=_colour(rng, UPPER_COLOURS[rng.integers(len(UPPER_COLOURS))]),
        bag_side=int(rng.choice((-1, 1))),
        shoes=_colour(rng, SHOES[rng.integers(len(SHOES))]),
        width=float(rng.uniform(0.85, 1.2)),
        head=float(rng.uniform(0.055, 0.066)),
        hip=float(rng.uniform(0.47, 0.53)),
    )


def supersampling(height: int) -> int:
    """Render small images at >= 128 rows and downsample, so thin parts are anti-aliased."""
    return max(1, -(-128 // height))


@dataclasses.dataclass(frozen=True)
class Camera:
    """One camera of a domain: the means around which each of its images draws its own framing,
    view, light and backdrop."""

    view_p: np.ndarray  # probabilities over VIEWS
    height: float  # person height as a fraction of the image height
    top: float  # y of the head top, fraction of the image height
    dx: float  # horizontal offset of the person, fraction of the image width
    shear: float
    aspect: float  # horizontal stretch of the person
    gain: float
    contrast: float
    white_balance: np.ndarray
    gradient: float  # top-to-bottom light fall-off
    scenes: Tuple[np.ndarray, ...]  # float32 (H, 2W, 3) at render resolution; images crop them
    blur: float  # mean Gaussian sigma, a fraction of the image height (the domain's, more when dominant)
    image_spread: float  # scale of the per-image light, white-balance, blur and backdrop-tint jitter


def sample_camera(rng: np.random.Generator, style: DomainStyle, index: int,
                  size: Tuple[int, int], dominance: float = 0.0) -> Camera:
    """A camera of ``style``'s domain. ``dominance`` (0..1) widens how far the cameras' light, white
    balance and blur lie apart, gives each camera backdrops of its own family only, and narrows the
    per-image spread around the camera: the camera, not the image, then decides what the picture
    looks like (CAMERA_DOMINANCE of the procedural data)."""
    view_p = np.full(4, (1.0 - VIEW_FOCUS) / 3)
    view_p[rng.integers(4)] = VIEW_FOCUS
    spread = style.framing_spread
    height = float(0.87 + spread * rng.uniform(-0.07, 0.07))
    ss = supersampling(size[0])
    own = style.backgrounds[index % len(style.backgrounds)]
    own_scenes = OWN_SCENES + round(dominance * (SCENES_PER_CAMERA - OWN_SCENES))
    families = [own] * own_scenes + [style.backgrounds[rng.integers(len(style.backgrounds))]
                                     for _ in range(SCENES_PER_CAMERA - own_scenes)]
    widen = 1.0 + 3.0 * dominance  # the cameras' light and white balance lie this much further apart

    def around_mid(low, high):  # a draw in [low, high], pushed away from the middle by ``widen``
        draw = rng.uniform(low, high)
        return float(draw + (draw - (low + high) / 2) * (widen - 1.0))

    return Camera(
        view_p=view_p, height=height, top=float((1 - height) * (0.5 + spread * rng.uniform(-0.25, 0.25))),
        dx=float(spread * rng.uniform(-0.06, 0.06)), shear=float(spread * rng.uniform(-0.08, 0.08)),
        aspect=float(1.0 + spread * rng.uniform(-0.15, 0.15)),
        gain=around_mid(*style.gain), contrast=around_mid(*style.contrast),
        white_balance=1.0 + np.asarray(style.cast) + widen * rng.uniform(-style.cast_jitter,
                                                                         style.cast_jitter, 3),
        gradient=float(spread * rng.uniform(-0.25, 0.25)),
        scenes=tuple(_scene(rng, family, (size[0] * ss, 2 * size[1] * ss)) for family in families),
        blur=float(style.blur + dominance * rng.uniform(0.0, 0.02)), image_spread=1.0 - 0.7 * dominance)


# ----------------------------------------------------------------------------------- backgrounds
def _scene_crop(camera: Camera, rng: np.random.Generator, shape: Tuple[int, int]) -> np.ndarray:
    """A random window of one of the camera's scenes, re-tinted, with some clutter in it.

    Backgrounds vary per image so that a network cannot identify people by where they stand;
    with one fixed backdrop per camera it memorised backdrops and failed on unseen cameras.
    """
    h, w = shape
    scene = camera.scenes[rng.integers(len(camera.scenes))]
    offset = int(rng.integers(0, scene.shape[1] - w + 1))
    tint = 1.0 + (rng.uniform(0.85, 1.15, 3) - 1.0) * camera.image_spread
    crop = scene[:, offset:offset + w] * tint.astype(np.float32)
    for _ in range(rng.integers(0, 3)):  # parked bikes, bins, signs: boxes of random colour
        y0, x0 = int(rng.integers(0, h - h // 8)), int(rng.integers(0, w - w // 8))
        y1, x1 = y0 + int(rng.integers(h // 10, h // 3)), x0 + int(rng.integers(w // 8, w // 2))
        crop[y0:y1, x0:x1] = rng.uniform(0.1, 0.9, 3)
    return crop


def _smooth_noise(rng: np.random.Generator, shape: Tuple[int, int], cells: Tuple[int, int]):
    """Low-frequency noise in [0, 1]: a coarse random grid upsampled smoothly."""
    grid = rng.random(cells).astype(np.float32)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _scene(rng: np.random.Generator, family: str, shape: Tuple[int, int]) -> np.ndarray:
    """A camera's backdrop; sizes are fractions of the height so any resolution looks alike."""
    h, w = shape
    y = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h
    x = (np.arange(w, dtype=np.float32)[None, :] + 0.5) / h
    horizon = rng.uniform(0.55, 0.75)
    ground = (y > horizon) & (x >= 0)
    coarse = _smooth_noise(rng, shape, (6, 10))[..., None]
    fine = rng.random((h, w, 1)).astype(np.float32)

    def tone(base, spread=0.08):
        return np.clip(np.asarray(base) + rng.uniform(-spread, spread, 3), 0, 1).astype(np.float32)

    if family == "street":
        wall, pave = tone((0.78, 0.74, 0.68)), tone((0.62, 0.62, 0.60))
        img = wall * (0.85 + 0.3 * coarse)
        tile = rng.uniform(0.1, 0.2)
        windows = (np.mod(x, 0.35) < 0.18) & (np.mod(y, 0.3) < 0.16) & ~ground
        img = np.where(windows[..., None], tone((0.35, 0.42, 0.50)), img)
        lines = (np.mod(x, tile) < 0.012) | (np.mod(y - horizon, tile * 0.6) < 0.01)
        floor = pave * (0.9 + 0.15 * fine) * np.where(lines, 0.75, 1.0)[..., None]
        return np.where(ground[..., None], floor, img).astype(np.float32)
    if family == "park":
        foliage = _smooth_noise(rng, shape, (12, 24))[..., None]
        leaves = tone((0.30, 0.50, 0.25), 0.1) * (0.6 + 0.6 * foliage)
        grass = tone((0.40, 0.62, 0.30), 0.08) * (0.8 + 0.3 * fine)
        path = (np.abs(x - rng.uniform(0.2, 0.8) * w / h) < 0.25) & ground
        img = np.where(ground[..., None], grass, leaves)
        gravel = tone((0.75, 0.70, 0.60)) * (0.9 + 0.1 * fine)
        return np.where(path[..., None], gravel, img).astype(np.float32)
    if family == "plaza":
        stone, tile = tone((0.86, 0.80, 0.68)), rng.uniform(0.2, 0.35)
        checker = (np.floor(x / tile) + np.floor(y / tile)) % 2
        img = stone * (0.9 + 0.08 * checker[..., None]) * (0.9 + 0.2 * coarse)
        sky = tone((0.70, 0.80, 0.92)) * (0.95 + 0.1 * coarse)
        return np.where((y < horizon - 0.35)[..., None], sky, img).astype(np.float32)
    if family == "brick":
        brick_h = rng.uniform(0.06, 0.09)
        row = np.floor(y / brick_h)
        offset = np.where(row % 2 == 0, 0.0, 0.09)
        mortar = (np.mod(y, brick_h) < 0.008) | (np.mod(x + offset, 0.18) < 0.008)
        bricks = tone((0.55, 0.30, 0.24), 0.08) * (0.85 + 0.2 * coarse)
        wall = np.where(mortar[..., None], bricks * 1.2, bricks)
        asphalt = tone((0.32, 0.33, 0.35)) * (0.9 + 0.15 * fine)
        return np.where(ground[..., None], asphalt, wall).astype(np.float32)
    if family == "fence":
        posts = np.mod(x, rng.uniform(0.3, 0.5)) < 0.03
        rails = (np.abs(y - horizon + 0.25) < 0.015) | (np.abs(y - horizon + 0.05) < 0.015)
        backdrop = tone((0.55, 0.62, 0.70)) * (0.8 + 0.4 * coarse)
        fence = np.where((posts | rails)[..., None], tone((0.40, 0.42, 0.42)), backdrop)
        asphalt = tone((0.34, 0.34, 0.36)) * (0.9 + 0.15 * fine)
        return np.where(ground[..., None], asphalt, fence).astype(np.float32)
    if family == "corridor":
        panel = rng.uniform(0.15, 0.3)
        seams = np.mod(x, panel) < 0.01
        wall = tone((0.60, 0.64, 0.70)) * (0.9 + 0.15 * coarse)
        wall = wall * np.where(seams, 0.7, 1.0)[..., None]
        floor = tone((0.45, 0.45, 0.48)) * (0.8 + 0.5 * (y - horizon)) * (0.95 + 0.1 * fine)
        lights = (y < 0.08) & (np.mod(x, 0.5) < 0.2)
        wall = np.where(lights[..., None], np.float32(0.95), wall)
        return np.where(ground[..., None], floor, wall).astype(np.float32)
    raise ValueError(f"unknown background family {family!r}")


# ------------------------------------------------------------------------------------- the person
class _Canvas:
    """Paint layer indices, not colours: each paint is one uint8 write, composed once at the end.

    A layer has a colour and a second colour; the second is used where the garment pattern is on,
    so only upper-garment layers set it.
    """

    def __init__(self, shape: Tuple[int, int]):
        self.labels = np.zeros(shape, dtype=np.uint8)  # 0 = background
        self.colours = [np.zeros(3)]
        self.second = [np.zeros(3)]

    def paint(self, mask: np.ndarray, colour: np.ndarray, second: np.ndarray = None) -> None:
        self.labels[mask] = len(self.colours)
        self.colours.append(colour)
        self.second.append(colour if second is None else second)

    def compose(self, background: np.ndarray, pattern, shade: np.ndarray) -> np.ndarray:
        """Colour the layers over ``background``; ``pattern`` (None when plain) switches upper
        garments to their second colour, ``shade`` darkens the body. ``np.take`` on one stacked
        table is several times faster than fancy indexing or ``np.where`` on RGB images."""
        table = np.asarray(self.colours + self.second, dtype=np.float32)  # rows 0 and n: zeros
        index = self.labels if pattern is None else self.labels + len(self.colours) * pattern
        person = np.take(table, index, axis=0) * shade[..., None]
        return person + background * (self.labels == 0)[..., None]


def _ellipse(u, v, cu, cv, ru, rv):
    return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 <= 1.0


def _band(u, v, centre, half_width, v0, v1):
    """Vertical strip between rows v0..v1; ``centre`` may vary with v (slanted limbs)."""
    return (np.abs(u - centre) <= half_width) & (v >= v0) & (v <= v1)


def _trapezoid(u, v, centre, half_top, half_bottom, v0, v1):
    t = np.clip((v - v0) / (v1 - v0), 0.0, 1.0)
    return _band(u, v, centre, half_top + (half_bottom - half_top) * t, v0, v1)


def _pattern(ident: Identity, u, v, view: str, shoulder: float):
    """Where the upper garment shows its second colour, drawn in body coordinates (None: plain)."""
    p = ident.period
    if ident.pattern == "plain" or (ident.pattern == "logo" and view != "front"):
        return None
    if ident.pattern == "hstripes":
        return np.sin(2 * np.pi * v / p) > 0
    if ident.pattern == "vstripes":
        return np.sin(2 * np.pi * u / p) > 0
    if ident.pattern == "checks":
        return (np.sin(2 * np.pi * v / p) > 0) ^ (np.sin(2 * np.pi * u / p) > 0)
    if ident.pattern == "yoke":
        return v < shoulder + 0.08
    return (np.abs(u - 0.02) < 0.04) & (v > shoulder + 0.05) & (v < shoulder + 0.13)  # chest logo


@dataclasses.dataclass(frozen=True)
class _Pose:
    view: str
    stride: float  # leg spread
    swing: float  # arm swing


def _paint_person(canvas: _Canvas, ident: Identity, pose: _Pose, u, v):
    """Paint back to front; side views mirror ``u`` so 'forward' is always +u.

    Returns the garment-pattern mask and the body shading for ``_Canvas.compose``.
    """
    side = pose.view in ("left", "right")
    facing = -1 if pose.view == "left" else 1
    if side:
        u = u * facing
    wf = ident.width
    shoulder, hip = 0.16, ident.hip
    half_sh, half_hip = (0.065 * wf, 0.06 * wf) if side else (0.1 * wf, 0.085 * wf)
    arm = 0.022 * wf
    head_v, head_rv = 0.012 + ident.head, ident.head
    head_ru = 0.78 * head_rv
    skin = ident.skin.astype(np.float32)
    sleeve_end = hip - 0.02 if ident.long_sleeves else shoulder + 0.1
    # Which side a shoulder bag / handbag hangs on, as seen in this view (mirrored from behind).
    bag_u = ident.bag_side * (-1 if pose.view == "back" else 1)
    bag_visible = not side or ident.bag_side * facing > 0

    def paint_arm(centre, shade=1.0):
        limb = _band(u, v, centre, arm, shoulder, hip + 0.05)
        sleeve = limb & (v <= sleeve_end)
        canvas.paint(limb & ~sleeve, skin * shade)
        canvas.paint(sleeve, ident.upper * shade, ident.upper2 * shade)

    def paint_legs(centres):
        leg_v0 = hip if ident.lower_type != "skirt" else hip + 0.1
        for c in centres:
            leg = _band(u, v, c, 0.034 * wf, leg_v0, 0.965)
            covered = leg & (v <= (hip + 0.17 if ident.lower_type == "shorts" else 0.965))
            if ident.lower_type == "skirt":
                covered = leg & (v < leg_v0)
            canvas.paint(leg & ~covered, skin)
            canvas.paint(covered, ident.lower)
            foot_front = 0.055 if side else 0.03
            canvas.paint((u >= c - 0.03) & (u <= c + foot_front) & (v > 0.955) & (v <= 1.0),
                         ident.shoes)
        if ident.lower_type != "skirt":
            canvas.paint(_band(u, v, 0.0, half_hip, hip - 0.01, hip + 0.05), ident.lower)
        else:
            canvas.paint(_trapezoid(u, v, 0.0, half_hip, half_hip * 1.5, hip - 0.01, hip + 0.22),
                         ident.lower)

    if side:
        arm_line = pose.swing * (v - shoulder)
        paint_arm(-arm_line, shade=0.75)  # far arm, behind the body
        if ident.bag == "backpack":
            canvas.paint((u >= -half_sh - 0.075) & (u <= -half_sh + 0.01)
                         & (v >= shoulder + 0.01) & (v <= shoulder + 0.27), ident.bag_colour)
        stride = pose.stride * (v - hip) / (1 - hip)
        paint_legs((-stride, stride))
        canvas.paint(_trapezoid(u, v, 0.0, half_sh, half_hip, shoulder, hip + 0.02), ident.upper,
                     ident.upper2)
        if ident.long_hair:
            canvas.paint(_band(u, v, -0.6 * head_ru, 0.5 * head_ru, head_v - head_rv,
                               head_v + 2.0 * head_rv), ident.hair)
        paint_arm(arm_line)
    else:
        spread = pose.stride * 0.25 * (v - hip) / (1 - hip)
        paint_legs((-0.04 * wf - spread, 0.04 * wf + spread))
        if ident.long_hair and pose.view == "front":
            canvas.paint(_band(u, v, 0.0, 1.15 * head_ru, head_v - 0.5 * head_rv,
                               head_v + 2.0 * head_rv), ident.hair)
        canvas.paint(_trapezoid(u, v, 0.0, half_sh, half_hip, shoulder, hip + 0.02), ident.upper,
                     ident.upper2)
        out = abs(pose.swing) * 0.15 * (v - shoulder)
        paint_arm(-(half_sh + arm + out))
        paint_arm(half_sh + arm + out)
    canvas.paint(_band(u, v, 0.0, 0.025, head_v + 0.5 * head_rv, shoulder + 0.01), skin)
    head = _ellipse(u, v, 0.0, head_v, head_ru, head_rv)
    canvas.paint(head, skin)
    if pose.view == "back":
        canvas.paint(head & (v < head_v + 0.5 * head_rv), ident.hair)
        if ident.long_hair:
            canvas.paint(_band(u, v, 0.0, 1.1 * head_ru, head_v, head_v + 2.3 * head_rv),
                         ident.hair)
    elif side:
        canvas.paint(head & ((u < 0.25 * head_ru) | (v < head_v - 0.4 * head_rv)), ident.hair)
    else:
        canvas.paint(head & (v < head_v - 0.35 * head_rv), ident.hair)
    if ident.hat is not None:
        cap = (_ellipse(u, v, 0.0, head_v, 1.1 * head_ru, 1.05 * head_rv)
               & (v < head_v - 0.25 * head_rv))
        canvas.paint(cap, ident.hat)
        if side:
            canvas.paint((u >= 0) & (u <= 1.7 * head_ru) & (v >= head_v - 0.38 * head_rv)
                         & (v <= head_v - 0.2 * head_rv), ident.hat)
    if ident.bag == "backpack" and pose.view == "back":
        canvas.paint(_band(u, v, 0.0, 0.075 * wf, shoulder + 0.01, shoulder + 0.27),
                     ident.bag_colour)
        canvas.paint(_band(u, v, 0.0, 0.05 * wf, shoulder + 0.17, shoulder + 0.25),
                     ident.bag_colour * 0.75)
    elif ident.bag == "backpack" and pose.view == "front":
        for s in (-1, 1):
            canvas.paint(_band(u, v, s * 0.055 * wf, 0.011, shoulder, shoulder + 0.22),
                         ident.bag_colour)
    elif ident.bag == "shoulder" and bag_visible:
        centre = 0.0 if side else bag_u * (half_sh + 0.02)
        if not side:
            strap = -bag_u * 0.7 * half_sh + (v - shoulder) / (hip - 0.07 - shoulder) * (
                bag_u * (half_sh + 0.02) + bag_u * 0.7 * half_sh)
            canvas.paint(_band(u, v, strap, 0.009, shoulder, hip - 0.07), ident.bag_colour * 0.8)
        canvas.paint(_band(u, v, centre, 0.045, hip - 0.07, hip + 0.06), ident.bag_colour)
    elif ident.bag == "handbag" and bag_visible:
        centre = pose.swing * (hip + 0.05 - shoulder) if side else bag_u * (half_sh + 2 * arm)
        canvas.paint(_band(u, v, centre, 0.04, hip + 0.03, hip + 0.13), ident.bag_colour)
    # Round bodies: darker towards the silhouette's edges.
    shade = 1.0 - 0.3 * np.clip((u / (half_sh + 2 * arm)) ** 2, 0.0, 1.0)
    return _pattern(ident, u, v, pose.view, shoulder), shade


def render(ident: Identity, camera: Camera, style: DomainStyle, rng: np.random.Generator,
           size: Tuple[int, int]) -> np.ndarray:
    """One uint8 (H, W, 3) RGB image of ``ident`` seen by ``camera``; ``rng`` draws the jitter."""
    height, width = size
    ss = supersampling(height)
    hr, wr = height * ss, width * ss
    jitter = style.image_framing
    person_h = min(camera.height * (1.0 + jitter * rng.uniform(-0.08, 0.05)), 0.98)
    top = float(np.clip(camera.top + jitter * rng.uniform(-0.04, 0.04), 0.0, 1.0 - person_h))
    centre = (width / height) * (0.5 + camera.dx + jitter * rng.uniform(-0.08, 0.08))
    shear = camera.shear + jitter * rng.uniform(-0.04, 0.04)
    aspect = camera.aspect * (1.0 + jitter * rng.uniform(-0.06, 0.06))
    pose = _Pose(view=VIEWS[rng.choice(4, p=camera.view_p)], stride=float(rng.uniform(0.0, 0.1)),
                 swing=float(rng.uniform(-0.15, 0.15)))
    background = _scene_crop(camera, rng, (hr, wr))

    y = (np.arange(hr, dtype=np.float32)[:, None] + 0.5) / hr
    x = (np.arange(wr, dtype=np.float32)[None, :] + 0.5) / hr
    v = np.broadcast_to((y - top) / person_h, (hr, wr))
    u = (x - centre - shear * (y - top - person_h / 2)) / (person_h * aspect)
    canvas = _Canvas((hr, wr))
    pattern, shade = _paint_person(canvas, ident, pose, u, v)
    rgb = canvas.compose(background, pattern, shade)
    if rng.random() < style.occluder_p:
        colour = rng.uniform(0.1, 0.6, 3).astype(np.float32)
        if rng.random() < 0.5:  # a pole or a passer-by's edge
            x0 = rng.uniform(0.0, 0.8) * width / height
            mask = (x >= x0) & (x <= x0 + rng.uniform(0.06, 0.15)) & (y >= 0)
        else:  # a low wall, a car bonnet, a bench
            mask = (y >= rng.uniform(0.72, 0.88)) & (x >= 0)
        rgb[mask] = colour

    if ss > 1:  # geometry is anti-aliased; light and colour are per pixel, done at the output size
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    y = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height
    spread = camera.image_spread
    gain = camera.gain * np.exp(rng.normal(0.0, style.image_light) * spread)
    gradient = camera.gradient + rng.uniform(-0.15, 0.15) * spread
    light = gain * (1.0 + gradient * (0.5 - y))
    white_balance = camera.white_balance + rng.uniform(-style.image_cast, style.image_cast, 3) * spread
    rgb = rgb * white_balance.astype(np.float32) * light[..., None]
    rgb = (rgb - 0.5) * (camera.contrast * rng.uniform(0.94, 1.06)) + 0.5
    if style.saturation != 1.0:
        grey = (rgb @ np.full((3, 1), 1.0 / 3.0, dtype=np.float32))
        rgb = grey + (rgb - grey) * style.saturation
    rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
    if camera.blur > 0:
        scale = 1.0 + (rng.uniform(0.6, 1.4) - 1.0) * spread
        rgb = cv2.GaussianBlur(rgb, (0, 0), sigmaX=camera.blur * height * scale)
    noise = style.noise * rng.uniform(0.6, 1.4)
    rgb = rgb + rng.normal(0.0, noise, rgb.shape).astype(np.float32)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
