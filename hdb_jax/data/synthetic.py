"""Procedural faces: an identity is a parameter vector, a view is a small pose/lighting/background
jitter.

Everything is drawn with numpy and Pillow and is a pure function of (seed, identity id, view id), so
identity-conditioned learning can be measured offline: views of one identity are far more alike than
views of two identities (tests/test_data.py checks this with a pixel distance).

    params = identity_params(seed=0, identity_id=3)      # float32 [NUM_PARAMS] in [0, 1]
    face = render_face(params, view_id=1, resolution=64)  # uint8 [64, 64, 3]
"""

import dataclasses
import zlib
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

# The identity vector: every entry in [0, 1]; colours are RGB fractions, the rest are mapped to a
# range when drawn (see `_Face`).
PARAM_NAMES = (
  "face_width",
  "face_aspect",
  "skin_r",
  "skin_g",
  "skin_b",
  "hair_r",
  "hair_g",
  "hair_b",
  "hair_style",
  "hair_volume",
  "iris_r",
  "iris_g",
  "iris_b",
  "eye_spacing",
  "eye_size",
  "nose_length",
  "nose_width",
  "mouth_width",
  "mouth_height",
  "brow_thickness",
  "shirt_r",
  "shirt_g",
  "shirt_b",
  "ear_size",
)
NUM_PARAMS = len(PARAM_NAMES)
HAIR_STYLES = ("short", "long", "bald", "bun")

_SKIN_TONES = np.array(
  [
    [0.36, 0.22, 0.14],
    [0.55, 0.36, 0.24],
    [0.76, 0.57, 0.42],
    [0.90, 0.72, 0.58],
    [0.98, 0.85, 0.75],
  ]
)
_HAIR_COLOURS = np.array(
  [
    [0.08, 0.06, 0.05],
    [0.30, 0.18, 0.09],
    [0.55, 0.35, 0.16],
    [0.85, 0.70, 0.40],
    [0.60, 0.22, 0.08],
    [0.70, 0.70, 0.72],
    [0.20, 0.25, 0.60],
    [0.75, 0.25, 0.50],
  ]
)
_IRIS_COLOURS = np.array(
  [
    [0.30, 0.18, 0.08],
    [0.15, 0.35, 0.65],
    [0.25, 0.50, 0.25],
    [0.45, 0.40, 0.30],
    [0.50, 0.55, 0.60],
  ]
)
_BACKGROUND = np.array([0.78, 0.80, 0.84])
_SUPERSAMPLE = 2


def _identity_rng(seed: int, identity_id: int) -> np.random.Generator:
  return np.random.default_rng([int(seed), int(identity_id), 0x1D])


def identity_params(seed: int, identity_id: int) -> np.ndarray:
  """The identity's parameter vector: float32 [NUM_PARAMS] in [0, 1], a pure function of (seed,
  identity_id)."""
  rng = _identity_rng(seed, identity_id)

  def pick(palette: np.ndarray, spread: float) -> np.ndarray:
    a, b = rng.choice(len(palette), 2, replace=False)
    mix = palette[a] + rng.uniform(0, 0.35) * (palette[b] - palette[a])
    return np.clip(mix + rng.normal(0, spread, 3), 0, 1)

  values = dict(zip(PARAM_NAMES, rng.uniform(0, 1, NUM_PARAMS)))
  values.update(zip(("skin_r", "skin_g", "skin_b"), pick(_SKIN_TONES, 0.03)))
  values.update(zip(("hair_r", "hair_g", "hair_b"), pick(_HAIR_COLOURS, 0.05)))
  values.update(zip(("iris_r", "iris_g", "iris_b"), pick(_IRIS_COLOURS, 0.05)))
  values.update(zip(("shirt_r", "shirt_g", "shirt_b"), rng.uniform(0.05, 0.95, 3)))
  return np.array([values[k] for k in PARAM_NAMES], np.float32)


def _lerp(lo: float, hi: float, t: float) -> float:
  return lo + (hi - lo) * float(t)


def _rgb(values: np.ndarray, alpha: int = 255) -> tuple[int, int, int, int]:
  r, g, b = (int(round(255 * float(np.clip(v, 0, 1)))) for v in values)
  return r, g, b, alpha


@dataclasses.dataclass(frozen=True)
class _Face:
  """The parameter vector mapped to drawing units (fractions of the image side)."""

  p: dict[str, float]

  def __getattr__(self, key: str) -> float:
    return self.p[key]

  def colour(self, prefix: str, scale: float = 1.0) -> tuple[int, int, int, int]:
    return _rgb(scale * np.array([self.p[f"{prefix}_{c}"] for c in "rgb"]))


# points [k, 2] (fractions of the side), fill
Polygon = tuple[np.ndarray, tuple[int, int, int, int]]


def ellipse(
  cx: float,
  cy: float,
  rx: float,
  ry: float,
  start: float = 0.0,
  stop: float = 360.0,
  points: int = 40,
) -> np.ndarray:
  """An ellipse (or, with start/stop in degrees, a chord of it) as polygon points [k, 2]."""
  t = np.deg2rad(np.linspace(start, stop, points, endpoint=stop - start < 360))
  return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
  return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


@dataclasses.dataclass(frozen=True)
class FaceGeometry:
  """Where an identity's face parts sit, unposed, in fractions of the image side: what accessories
  (hats, glasses) are placed by."""

  cx: float
  cy: float
  fw: float  # face width
  fh: float  # face height
  eye_y: float
  eye_dx: float  # eye centre to face centre
  eye_r: float
  mouth_y: float
  mouth_w: float
  mouth_h: float

  @property
  def top(self) -> float:
    return self.cy - self.fh / 2


def face_geometry(params: np.ndarray) -> FaceGeometry:
  """The face's layout from its identity parameters (see face_polygons)."""
  f = _Face(dict(zip(PARAM_NAMES, (float(v) for v in params))))
  fw = _lerp(0.30, 0.44, f.face_width)
  fh = fw * _lerp(1.12, 1.45, f.face_aspect)
  cx, cy = 0.5, 0.47
  eye_y = cy - 0.06 * fh
  eye_r = fw * _lerp(0.06, 0.10, f.eye_size)
  nose_len = fh * _lerp(0.12, 0.22, f.nose_length)
  mouth_y = eye_y + 0.5 * eye_r + nose_len + 0.08 * fh
  return FaceGeometry(
    cx=cx,
    cy=cy,
    fw=fw,
    fh=fh,
    eye_y=eye_y,
    eye_dx=fw * _lerp(0.17, 0.27, f.eye_spacing),
    eye_r=eye_r,
    mouth_y=mouth_y,
    mouth_w=fw * _lerp(0.16, 0.30, f.mouth_width),
    mouth_h=fh * _lerp(0.025, 0.07, f.mouth_height),
  )


def face_polygons(params: np.ndarray, smile: bool = False) -> list[Polygon]:
  """The head and shoulders, unposed, as filled polygons in back-to-front order (units: image
  side). smile: the mouth as a wide open smile (the lower half of a taller ellipse)."""
  f = _Face(dict(zip(PARAM_NAMES, (float(v) for v in params))))
  g = face_geometry(params)
  fw, fh, cx, cy = g.fw, g.fh, g.cx, g.cy
  top, bottom = g.top, cy + fh / 2
  skin, hair = f.colour("skin"), f.colour("hair")
  style = HAIR_STYLES[min(int(f.hair_style * len(HAIR_STYLES)), len(HAIR_STYLES) - 1)]
  volume = _lerp(0.02, 0.08, f.hair_volume)
  shapes: list[Polygon] = [
    (ellipse(0.5, bottom + 0.26, 0.42, 0.28), f.colour("shirt")),
    (box(cx - 0.22 * fw, cy, cx + 0.22 * fw, bottom + 0.06), f.colour("skin", 0.85)),
  ]
  if style == "long":
    half = fw / 2 + volume
    hem = bottom + 0.12
    shapes.append(
      (
        np.concatenate(
          [ellipse(cx, top + half, half, half, 180, 360), [[cx + half, hem], [cx - half, hem]]]
        ),
        hair,
      )
    )
  if style == "bun":
    r = 0.28 * fw + volume
    shapes.append((ellipse(cx, top - 0.6 * r, r, r), hair))
  ear_w, ear_h = fw * _lerp(0.10, 0.18, f.ear_size), fh * _lerp(0.14, 0.22, f.ear_size)
  for side in (-1, 1):
    shapes.append(
      (ellipse(cx + side * fw / 2, cy - ear_h / 4, ear_w, 0.75 * ear_h), f.colour("skin", 0.92))
    )
  shapes.append((ellipse(cx, cy, fw / 2, fh / 2), skin))
  if style != "bald":
    shapes.append(
      (ellipse(cx, top + 0.375 * fh, fw / 2 + volume, 0.375 * fh + volume, 180, 360), hair)
    )
  else:
    for side in (-1, 1):  # a fringe above each ear
      shapes.append((ellipse(cx + side * 0.46 * fw, cy - 0.15 * fh, 0.07 * fw, 0.15 * fh), hair))

  eye_y, eye_dx, eye_r = g.eye_y, g.eye_dx, g.eye_r
  brow_t = fh * _lerp(0.012, 0.04, f.brow_thickness)
  for side in (-1, 1):
    ex = cx + side * eye_dx
    shapes += [
      (ellipse(ex, eye_y, 1.5 * eye_r, eye_r), (250, 250, 250, 255)),
      (ellipse(ex, eye_y, eye_r, eye_r, points=24), f.colour("iris")),
      (ellipse(ex, eye_y, 0.45 * eye_r, 0.45 * eye_r, points=16), (15, 15, 15, 255)),
      (
        box(ex - 1.6 * eye_r, eye_y - 2.0 * eye_r - brow_t, ex + 1.6 * eye_r, eye_y - 2.0 * eye_r),
        hair,
      ),
    ]
  nose_len, nose_w = fh * _lerp(0.12, 0.22, f.nose_length), fw * _lerp(0.07, 0.14, f.nose_width)
  nose_top = eye_y + 0.5 * eye_r
  shapes.append(
    (
      np.array(
        [[cx, nose_top], [cx - nose_w, nose_top + nose_len], [cx + nose_w, nose_top + nose_len]]
      ),
      f.colour("skin", 0.8),
    )
  )
  mouth_y, mouth_w, mouth_h = g.mouth_y, g.mouth_w, g.mouth_h
  lips = _rgb(0.55 * np.array([f.skin_r, f.skin_g, f.skin_b]) + np.array([0.35, 0.05, 0.08]))
  if smile:
    shapes += [
      (ellipse(cx, mouth_y - mouth_h, 1.25 * mouth_w, 2.6 * mouth_h, 0, 180), lips),
      (ellipse(cx, mouth_y - mouth_h, 1.0 * mouth_w, 1.2 * mouth_h, 0, 180), (245, 245, 240, 255)),
    ]
  else:
    shapes.append((ellipse(cx, mouth_y, mouth_w, mouth_h), lips))
  return shapes


def _view_rng(params: np.ndarray, view_id: int, seed: int) -> np.random.Generator:
  digest = zlib.crc32(np.asarray(params, np.float32).tobytes())
  return np.random.default_rng([int(seed), digest, int(view_id), 0x51])


def render_face(
  params: np.ndarray,
  view_id: int,
  resolution: int,
  seed: int = 0,
  *,
  smile: bool = False,
  accessories: Sequence[Polygon] = (),
  background: Callable[[int], np.ndarray] | None = None,
) -> np.ndarray:
  """One view of an identity: uint8 [resolution, resolution, 3].

  The view (pose shift and rotation, scale, lighting direction and strength, background colour) is
  drawn from (seed, params, view_id); the same arguments always give the same pixels.
  accessories: polygons in the face's unposed units, drawn over it with the same pose (hats,
  glasses); background(size) -> uint8 [size, size, 3]: a scene behind the face instead of the plain
  backdrop (not posed).
  """
  rng = _view_rng(params, view_id, seed)
  shift = rng.uniform(-0.04, 0.04, 2)
  angle = np.deg2rad(rng.uniform(-8, 8))
  scale = rng.uniform(0.95, 1.05)
  light_angle, light_strength, exposure = (
    rng.uniform(0, 2 * np.pi),
    rng.uniform(0.05, 0.2),
    rng.uniform(0.95, 1.05),
  )
  backdrop = np.clip(_BACKGROUND + rng.uniform(-0.06, 0.06, 3), 0, 1)

  # The pose: rotate and scale about the image centre, then shift (applied to polygon points, so it
  # is exact).
  pose = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  size = resolution * _SUPERSAMPLE
  if background is None:
    canvas = Image.new("RGB", (size, size), _rgb(backdrop)[:3])
  else:
    canvas = Image.fromarray(np.asarray(background(size), np.uint8), "RGB")
  draw = ImageDraw.Draw(canvas)
  for points, fill in [*face_polygons(params, smile), *accessories]:
    posed = ((points - 0.5) @ pose.T + 0.5 + shift) * size
    draw.polygon([tuple(p) for p in posed.tolist()], fill=fill[:3])
  image = canvas.reduce(_SUPERSAMPLE)  # box filter: antialiased edges

  coords = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution * 2 - 1
  shade = np.cos(light_angle) * coords[None, :] + np.sin(light_angle) * coords[:, None]
  gain = (exposure * (1 + light_strength * shade))[..., None].astype(np.float32)
  return np.clip(np.asarray(image, np.float32) * gain + 0.5, 0, 255).astype(np.uint8)


def identity_name(identity_id: int) -> str:
  return f"synthetic/{identity_id:05d}"


def synthetic_examples(
  num_identities: int, views_per_identity: int, resolution: int, seed: int = 0
) -> Iterator[tuple[str, int, np.ndarray]]:
  """(identity name, view id, uint8 [resolution, resolution, 3]) for every view of every identity,
  in order."""
  for identity_id in range(num_identities):
    params = identity_params(seed, identity_id)
    for view_id in range(views_per_identity):
      yield identity_name(identity_id), view_id, render_face(params, view_id, resolution, seed)
