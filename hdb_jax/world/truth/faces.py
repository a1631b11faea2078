"""World v2 faces: an identity is a face (shape, skin, hair, eyes, brows, nose, mouth, ears, marks);
a view is everything else (clothing and its colour, framing, head turn, light, backdrop).

Framed like CelebA-HQ's aligned crops: the face fills most of the image, eyes a little above the
middle. Every function is a pure function of its arguments, so the ground truth is exact:

    params = identity_params(seed=0, identity_id=3)    # float32 [NUM_PARAMS] in [0, 1]
    view = draw_view(seed=0, identity_id=3, view_id=1)  # clothing, framing, pose, light
    face = render_face(params, view, resolution=64)     # uint8 [64, 64, 3]

Nothing about clothing is in `params`: two views of one identity differ in clothing and framing and
keep every face parameter; two identities differ in face parameters only.
"""

import dataclasses
import zlib
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

# The renderer's version: written into every card, dataset and network trained on world images;
# a file made for another version is refused (world.truth.check_version).
WORLD_VERSION = 2

# The identity vector: every entry in [0, 1]. Colours are RGB fractions; categorical entries
# (hair_style, facial_hair) pick bins of [0, 1) (see `category`); the rest map to a range when
# drawn.
PARAM_NAMES = (
  "face_width",
  "face_length",
  "jaw_width",
  "chin_shape",
  "skin_r",
  "skin_g",
  "skin_b",
  "hair_r",
  "hair_g",
  "hair_b",
  "hair_style",
  "hairline",
  "hair_volume",
  "iris_r",
  "iris_g",
  "iris_b",
  "eye_spacing",
  "eye_size",
  "eye_openness",
  "eye_tilt",
  "eye_height",
  "brow_thickness",
  "brow_arch",
  "brow_tilt",
  "nose_length",
  "nose_width",
  "nose_tip",
  "mouth_width",
  "lip_thickness",
  "lip_tint",
  "ear_size",
  "ear_protrusion",
  "freckles",
  "mole",
  "mole_x",
  "mole_y",
  "facial_hair",
)
NUM_PARAMS = len(PARAM_NAMES)
HAIR_STYLES = ("short", "long", "bald", "bun", "bob", "curly", "side part", "buzz")
FACIAL_HAIR = ("none", "moustache", "beard", "goatee", "stubble")
# How often each kind of facial hair is drawn (the rest of [0, 1) is 'none').
_FACIAL_HAIR_SHARE = {"moustache": 0.07, "beard": 0.07, "goatee": 0.06, "stubble": 0.06}
FRECKLES_SHARE, MOLE_SHARE = 0.25, 0.35  # identities with freckles / with a mole
# The parameters that are categories: name -> the categories, in order of their [0, 1) bins.
CATEGORIES = {"hair_style": HAIR_STYLES, "facial_hair": FACIAL_HAIR}

_SKIN_TONES = np.array(
  [
    [0.33, 0.21, 0.14],
    [0.50, 0.33, 0.22],
    [0.70, 0.50, 0.36],
    [0.86, 0.68, 0.54],
    [0.97, 0.84, 0.74],
  ]
)
_HAIR_COLOURS = np.array(
  [
    [0.07, 0.05, 0.04],
    [0.28, 0.17, 0.09],
    [0.52, 0.33, 0.15],
    [0.86, 0.72, 0.42],
    [0.62, 0.22, 0.07],
    [0.72, 0.72, 0.74],
    [0.20, 0.26, 0.62],
    [0.76, 0.26, 0.52],
  ]
)
_IRIS_COLOURS = np.array(
  [
    [0.28, 0.16, 0.07],
    [0.16, 0.38, 0.70],
    [0.22, 0.52, 0.24],
    [0.48, 0.42, 0.28],
    [0.52, 0.56, 0.62],
  ]
)
_SUPERSAMPLE = 4

# points [k, 2] (fractions of the side), fill RGBA (alpha < 255 blends)
Polygon = tuple[np.ndarray, tuple[int, int, int, int]]


def category(params: np.ndarray, name: str) -> str:
  """The category a categorical parameter picks: its [0, 1) range cut into equal bins."""
  options = CATEGORIES[name]
  value = float(params[PARAM_NAMES.index(name)])
  return options[min(int(value * len(options)), len(options) - 1)]


def _identity_rng(seed: int, identity_id: int) -> np.random.Generator:
  return np.random.default_rng([int(seed), int(identity_id), 0xFACE2])


def identity_params(seed: int, identity_id: int) -> np.ndarray:
  """The identity's face: float32 [NUM_PARAMS] in [0, 1], a pure function of (seed, identity_id)."""
  rng = _identity_rng(seed, identity_id)

  def pick(palette: np.ndarray, spread: float) -> np.ndarray:
    a, b = rng.choice(len(palette), 2, replace=False)
    mix = palette[a] + rng.uniform(0, 0.5) * (palette[b] - palette[a])
    return np.clip(mix + rng.normal(0, spread, 3), 0, 1)

  values = dict(zip(PARAM_NAMES, rng.uniform(0, 1, NUM_PARAMS)))
  values.update(zip(("skin_r", "skin_g", "skin_b"), pick(_SKIN_TONES, 0.03)))
  values.update(zip(("hair_r", "hair_g", "hair_b"), pick(_HAIR_COLOURS, 0.05)))
  values.update(zip(("iris_r", "iris_g", "iris_b"), pick(_IRIS_COLOURS, 0.05)))
  # marks and facial hair are present on some faces only: 0 means none
  values["freckles"] = rng.uniform(0.3, 1.0) if rng.random() < FRECKLES_SHARE else 0.0
  values["mole"] = 1.0 if rng.random() < MOLE_SHARE else 0.0
  u, edge, kind = rng.random(), 0.0, "none"
  for name, share in _FACIAL_HAIR_SHARE.items():
    if edge <= u < edge + share:
      kind = name
    edge += share
  bins = len(FACIAL_HAIR)
  values["facial_hair"] = (FACIAL_HAIR.index(kind) + rng.uniform(0.1, 0.9)) / bins
  return np.array([values[k] for k in PARAM_NAMES], np.float32)


@dataclasses.dataclass(frozen=True)
class View:
  """What changes from photo to photo of one identity (never part of the identity).

  clothing: RGB in [0, 1]; neckline: 0 crew, 1 v-neck, 2 collar; shift: framing offset [2]
  (fractions of the side); scale: zoom; angle: roll (degrees); yaw: head turn in [-1, 1];
  light_angle (radians), light_strength, exposure; backdrop: the plain backdrop's RGB in [0, 1]
  where no scene background is drawn (the synthetic source; world renders draw the scene's).
  """

  clothing: tuple[float, float, float] = (0.3, 0.4, 0.6)
  neckline: int = 0
  shift: tuple[float, float] = (0.0, 0.0)
  scale: float = 1.0
  angle: float = 0.0
  yaw: float = 0.0
  light_angle: float = 0.0
  light_strength: float = 0.0
  exposure: float = 1.0
  backdrop: tuple[float, float, float] = (0.78, 0.80, 0.84)


def draw_view(seed: int, identity_id: int, view_id: int) -> View:
  """View `view_id` of an identity: a pure function of (seed, identity id, view id)."""
  rng = np.random.default_rng([int(seed), int(identity_id), int(view_id), 0x51E2])
  return View(
    clothing=tuple(float(c) for c in rng.uniform(0.05, 0.95, 3)),
    neckline=int(rng.integers(3)),
    shift=tuple(float(s) for s in rng.uniform(-0.03, 0.03, 2)),
    scale=float(rng.uniform(0.95, 1.05)),
    angle=float(rng.uniform(-6, 6)),
    yaw=float(rng.uniform(-1, 1)),
    light_angle=float(rng.uniform(0, 2 * np.pi)),
    light_strength=float(rng.uniform(0.05, 0.2)),
    exposure=float(rng.uniform(0.93, 1.07)),
    backdrop=tuple(float(c) for c in np.clip(0.8 + rng.uniform(-0.07, 0.07, 3), 0, 1)),
  )


def _lerp(lo: float, hi: float, t: float) -> float:
  return lo + (hi - lo) * float(t)


def _rgba(values: Sequence[float], alpha: int = 255) -> tuple[int, int, int, int]:
  r, g, b = (int(round(255 * float(np.clip(v, 0, 1)))) for v in values)
  return r, g, b, alpha


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


def _rotate(points: np.ndarray, cx: float, cy: float, degrees: float) -> np.ndarray:
  t = np.deg2rad(degrees)
  rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
  return (points - [cx, cy]) @ rot.T + [cx, cy]


def _band(curve: np.ndarray, thickness: np.ndarray | float) -> np.ndarray:
  """A stroke along curve [k, 2] of the given thickness (scalar or [k]) as a closed polygon."""
  tangent = np.gradient(curve, axis=0)
  normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)
  normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
  half = (np.broadcast_to(thickness, len(curve)) / 2)[:, None]
  return np.concatenate([curve + half * normal, (curve - half * normal)[::-1]])


@dataclasses.dataclass(frozen=True)
class FaceGeometry:
  """Where an identity's face parts sit in one view, before framing, in fractions of the side:
  what accessories (hats, glasses) are placed by. dx: the head turn's shift of the features."""

  cx: float
  cy: float  # the cheek line: the head's widest row
  fw: float  # face width
  top: float  # the top of the head
  bottom: float  # the chin
  eye_y: float
  eye_dx: float  # eye centre to face centre
  eye_r: float  # eye half-width
  mouth_y: float
  mouth_w: float  # mouth half-width
  dx: float

  @property
  def fh(self) -> float:
    return self.bottom - self.top


class _Face:
  """The parameter vector by name, mapped to drawing units."""

  def __init__(self, params: np.ndarray):
    self.p = dict(zip(PARAM_NAMES, (float(v) for v in params)))
    self.params = np.asarray(params, np.float32)

  def __getattr__(self, key: str) -> float:
    try:
      return self.__dict__["p"][key]
    except KeyError as e:
      raise AttributeError(key) from e

  def rgb(self, prefix: str) -> np.ndarray:
    return np.array([self.p[f"{prefix}_{c}"] for c in "rgb"])


def face_geometry(params: np.ndarray, yaw: float = 0.0) -> FaceGeometry:
  """The face's layout from its identity parameters and the view's head turn (see face_polygons)."""
  f = _Face(params)
  fw = _lerp(0.50, 0.62, f.face_width)
  fh = fw * _lerp(1.22, 1.45, f.face_length)
  cx, bottom = 0.5, 0.89
  top = bottom - fh
  cy = top + 0.45 * fh
  eye_y = top + fh * _lerp(0.44, 0.50, f.eye_height)
  eye_r = fw * _lerp(0.085, 0.115, f.eye_size)
  nose_len = fh * _lerp(0.13, 0.21, f.nose_length)
  mouth_y = min(eye_y + nose_len + 0.07 * fh, bottom - 0.12 * fh)
  return FaceGeometry(
    cx=cx,
    cy=cy,
    fw=fw,
    top=top,
    bottom=bottom,
    eye_y=eye_y,
    eye_dx=fw * _lerp(0.19, 0.25, f.eye_spacing),
    eye_r=eye_r,
    mouth_y=mouth_y,
    mouth_w=fw * _lerp(0.13, 0.23, f.mouth_width),
    dx=0.05 * fw * float(yaw),
  )


def _head_outline(f: _Face, g: FaceGeometry) -> np.ndarray:
  """The face's outline [k, 2]: a half ellipse above the cheek line, a superellipse jaw below."""
  a = g.fw / 2
  upper = ellipse(g.cx, g.cy, a, g.cy - g.top, 180, 360, 32)
  t = np.linspace(0, np.pi, 33)
  power = _lerp(1.6, 3.0, f.chin_shape)  # pointed chin .. square jaw
  taper = 1 - (1 - _lerp(0.70, 0.95, f.jaw_width)) * np.sin(t) ** 2
  x = np.sign(np.cos(t)) * np.abs(np.cos(t)) ** (2 / power) * a * taper
  y = np.abs(np.sin(t)) ** (2 / power) * (g.bottom - g.cy)
  return np.concatenate([upper, np.stack([g.cx + x, g.cy + y], 1)])


def _hair(f: _Face, g: FaceGeometry, colour: tuple) -> tuple[list[Polygon], list[Polygon]]:
  """(behind the head, over it) polygons of the identity's hair style."""
  style = category(f.params, "hair_style")
  volume = _lerp(0.02, 0.07, f.hair_volume)
  a, cx = g.fw / 2, g.cx
  line = g.top + g.fh * _lerp(0.10, 0.24, f.hairline)  # the fringe's lowest row
  behind: list[Polygon] = []
  front: list[Polygon] = []
  cap_ry = g.cy - g.top

  def cap(extra: float, lowest: float) -> np.ndarray:
    """The hair over the top of the head down to `lowest` at the middle, the sides lower."""
    arc = ellipse(cx, g.cy, a + extra, cap_ry + extra, 180, 360, 36)
    fringe_y = lowest + (g.eye_y - lowest) * 0.55 * np.abs(np.linspace(-1, 1, 15)) ** 3
    fringe = np.stack([np.linspace(cx + a + extra * 0.3, cx - a - extra * 0.3, 15), fringe_y], 1)
    return np.concatenate([arc, fringe])

  if style in ("long", "bob"):
    hem = 1.05 if style == "long" else g.bottom - 0.25 * g.fh
    width = a + volume + (0.06 if style == "long" else 0.03)
    behind.append(
      (
        np.concatenate(
          [
            ellipse(cx, g.cy, width, cap_ry + volume, 180, 360),
            [[cx + width, hem], [cx - width, hem]],
          ]
        ),
        colour,
      )  # fmt: skip
    )
  if style == "bun":
    r = 0.22 * g.fw + 0.5 * volume
    behind.append((ellipse(cx, g.top - 0.5 * r, r, r), colour))
  if style == "bald":
    for side in (-1, 1):
      front.append((ellipse(cx + side * 0.47 * g.fw, g.eye_y - 0.05 * g.fh, 0.06 * g.fw,
                            0.12 * g.fh), colour))  # fmt: skip
  elif style == "buzz":
    faded = tuple(int(0.5 * c + 0.5 * s) for c, s in zip(colour, _rgba(f.rgb("skin"))))
    front.append((cap(0.005, line), faded))
  elif style == "curly":
    front.append((cap(volume, line), colour))
    for k in range(11):  # a bumpy rim of curls
      t = np.deg2rad(180 + 18 * k)
      px, py = cx + (a + volume) * np.cos(t), g.cy + (cap_ry + volume) * np.sin(t)
      front.append((ellipse(px, py, 0.55 * volume + 0.02, 0.55 * volume + 0.02, points=16),
                    colour))  # fmt: skip
  elif style == "side part":
    front.append((cap(volume, line), colour))
    sweep = np.array([[cx - 0.1 * a, g.top], [cx + a + volume, line - 0.02],
                      [cx + a, line + 0.08 * g.fh], [cx + 0.2 * a, line + 0.02]])  # fmt: skip
    front.append((sweep, colour))
  elif style == "bob":  # straight bangs
    front.append((cap(volume, line + 0.05 * g.fh), colour))
  else:  # short, long, bun
    front.append((cap(volume, line), colour))
  return behind, front


def _eyes(f: _Face, g: FaceGeometry, brow_colour: tuple) -> list[Polygon]:
  shapes: list[Polygon] = []
  openness = _lerp(0.42, 0.75, f.eye_openness)
  tilt = _lerp(-12, 12, f.eye_tilt)
  iris = _rgba(f.rgb("iris"))
  brow_t = g.fh * _lerp(0.012, 0.035, f.brow_thickness)
  arch = _lerp(0.0, 0.7, f.brow_arch) * g.eye_r
  brow_tilt = _lerp(-10, 10, f.brow_tilt)
  for side in (-1, 1):
    ex = g.cx + g.dx + side * g.eye_dx
    ry = g.eye_r * openness
    white = _rotate(ellipse(ex, g.eye_y, g.eye_r, ry, points=28), ex, g.eye_y, -side * tilt)
    shapes.append((white, (248, 248, 246, 255)))
    iris_r = min(0.62 * g.eye_r, 0.98 * ry)
    shapes.append((ellipse(ex, g.eye_y, iris_r, iris_r, points=20), iris))
    shapes.append(
      (ellipse(ex, g.eye_y, 0.45 * iris_r, 0.45 * iris_r, points=12), (12, 12, 12, 255))
    )
    lid = _rotate(ellipse(ex, g.eye_y, g.eye_r, ry, 185, 355, 14), ex, g.eye_y, -side * tilt)
    shapes.append((_band(lid, 0.012), (40, 28, 24, 255)))
    t = np.linspace(-1, 1, 13)
    brow = np.stack([ex + side * 1.25 * g.eye_r * t, g.eye_y - 1.9 * ry - g.eye_r * 0.35
                     - arch * (1 - t**2)], 1)  # fmt: skip
    brow = _rotate(brow, ex, g.eye_y, side * brow_tilt)
    shapes.append((_band(brow, brow_t * (1 - 0.5 * (side * t + 1) / 2)), brow_colour))
  return shapes


def _nose_and_mouth(f: _Face, g: FaceGeometry, smile: bool) -> list[Polygon]:
  skin = f.rgb("skin")
  nx = g.cx + 1.4 * g.dx
  nose_len = g.mouth_y - g.eye_y - 0.07 * g.fh
  nose_w = g.fw * _lerp(0.07, 0.12, f.nose_width)
  tip_r = nose_w * _lerp(0.45, 0.9, f.nose_tip)
  base_y = g.eye_y + 0.25 * g.eye_r + nose_len
  shade = _rgba(0.78 * skin)
  shapes: list[Polygon] = [
    (np.array([[nx - 0.25 * nose_w, g.eye_y + 0.2 * g.eye_r], [nx + 0.1 * nose_w, g.eye_y],
               [nx + 0.75 * nose_w, base_y - tip_r], [nx - 0.1 * nose_w, base_y - tip_r]]),
     _rgba(0.9 * skin)),  # the bridge's shadow
    (ellipse(nx, base_y - 0.5 * tip_r, nose_w, 0.7 * tip_r), shade),
    (ellipse(nx, base_y - 0.6 * tip_r, tip_r, 0.75 * tip_r), _rgba(0.95 * skin)),
  ]  # fmt: skip
  for side in (-1, 1):  # nostrils
    shapes.append((ellipse(nx + side * 0.5 * nose_w, base_y - 0.2 * tip_r, 0.22 * nose_w,
                           0.16 * nose_w, points=12), _rgba(0.45 * skin)))  # fmt: skip
  mx, my, mw = g.cx + 1.1 * g.dx, g.mouth_y, g.mouth_w
  thick = g.fh * _lerp(0.018, 0.045, f.lip_thickness)
  lips = _rgba(0.6 * skin + np.array([0.32, 0.04, 0.08]) * _lerp(0.4, 1.2, f.lip_tint))
  if smile:
    shapes += [
      (ellipse(mx, my - thick, 1.15 * mw, 3.2 * thick, 0, 180), lips),
      (ellipse(mx, my - thick, 0.95 * mw, 1.6 * thick, 0, 180), (245, 245, 240, 255)),
    ]
  else:
    t = np.linspace(-1, 1, 15)
    upper = np.stack([mx + mw * t, my - thick * (1 - t**2) * (1 - 0.35 * np.cos(np.pi * t))], 1)
    lower = np.stack([mx - mw * t, my + 1.2 * thick * (1 - t**2)], 1)
    shapes.append((np.concatenate([upper, lower]), lips))
    shapes.append((_band(np.stack([mx + mw * t, my + 0 * t], 1), 0.008), _rgba(0.35 * skin)))
  return shapes


def _facial_hair(f: _Face, g: FaceGeometry, outline: np.ndarray, colour: tuple) -> list[Polygon]:
  kind = category(f.params, "facial_hair")
  mx, my, mw = g.cx + 1.1 * g.dx, g.mouth_y, g.mouth_w
  moustache = np.array([[mx - 1.1 * mw, my - 0.01], [mx, my - 0.05], [mx + 1.1 * mw, my - 0.01],
                        [mx + 0.9 * mw, my - 0.035], [mx, my - 0.065],
                        [mx - 0.9 * mw, my - 0.035]])  # fmt: skip
  if kind == "moustache":
    return [(moustache, colour)]
  if kind == "goatee":
    return [(moustache, colour), (ellipse(mx, g.bottom - 0.06 * g.fh, 0.6 * mw, 0.08 * g.fh),
                                  colour)]  # fmt: skip
  jaw = outline[outline[:, 1] > g.mouth_y - 0.06 * g.fh]  # the outline below the nose
  if kind == "beard":
    inner = ellipse(mx, my + 0.01, 1.2 * mw, 0.05, 0, 180, 15)  # leaves the mouth free
    return [(np.concatenate([jaw, inner]), colour), (moustache, colour)]
  if kind == "stubble":
    return [(jaw, (*colour[:3], 90))]
  return []


def _marks(f: _Face, g: FaceGeometry) -> list[Polygon]:
  """Freckles over the nose and cheeks, a mole: positions fixed per identity."""
  shapes: list[Polygon] = []
  if f.freckles > 0:
    rng = np.random.default_rng(zlib.crc32(f.params.tobytes()))
    count = int(round(_lerp(8, 28, f.freckles)))
    xs = g.cx + g.dx + rng.uniform(-0.32, 0.32, count) * g.fw
    ys = g.eye_y + g.eye_r + rng.uniform(0.0, 0.12, count) * g.fh
    for x, y in zip(xs, ys):
      shapes.append((ellipse(x, y, 0.0065, 0.0065, points=8), _rgba(0.66 * f.rgb("skin"))))
  if f.mole > 0.5:
    x = g.cx + g.dx + _lerp(-0.32, 0.32, f.mole_x) * g.fw
    y = _lerp(g.eye_y + g.eye_r, g.bottom - 0.15 * g.fh, f.mole_y)
    shapes.append((ellipse(x, y, 0.011, 0.011, points=10), (58, 36, 28, 255)))
  return shapes


def face_polygons(
  params: np.ndarray, view: View = View(), smile: bool = False
) -> tuple[list[Polygon], FaceGeometry]:
  """(the clothed head, back to front, before framing; its geometry). smile: an open smile."""
  f = _Face(params)
  g = face_geometry(params, view.yaw)
  skin = f.rgb("skin")
  hair = _rgba(f.rgb("hair"))
  brows = _rgba(0.8 * f.rgb("hair"))
  outline = _head_outline(f, g)
  behind, front = _hair(f, g, hair)
  cloth = np.asarray(view.clothing)
  shoulders = ellipse(0.5, 1.16, 0.55, 0.26)
  shapes: list[Polygon] = [*behind]
  shapes.append((box(g.cx - 0.2 * g.fw, g.cy, g.cx + 0.2 * g.fw, 1.0), _rgba(0.82 * skin)))
  shapes.append((shoulders, _rgba(cloth)))
  neck_x = 0.2 * g.fw
  if view.neckline == 1:  # v-neck
    shapes.append((np.array([[g.cx - neck_x, 0.92], [g.cx + neck_x, 0.92], [g.cx, 1.02]]),
                   _rgba(0.82 * skin)))  # fmt: skip
  elif view.neckline == 2:  # a collar
    for side in (-1, 1):
      shapes.append(
        (
          np.array(
            [
              [g.cx + side * neck_x, 0.92],
              [g.cx + side * 1.9 * neck_x, 0.97],
              [g.cx + side * 0.3 * neck_x, 1.0],
            ]
          ),
          _rgba(0.8 * cloth + 0.2),
        )
      )
  ear_w = g.fw * _lerp(0.07, 0.12, f.ear_size)
  ear_h = g.fh * _lerp(0.15, 0.22, f.ear_size)
  out = g.fw * _lerp(0.0, 0.05, f.ear_protrusion)
  for side in (-1, 1):
    turned = 1 - 0.35 * max(0.0, side * view.yaw)  # the ear the head turns towards shows less
    ex = g.cx + side * (g.fw / 2 + out * turned - 0.15 * ear_w)
    shapes.append(
      (ellipse(ex, g.eye_y + 0.3 * ear_h, ear_w * turned, ear_h / 2), _rgba(0.9 * skin))
    )
  shapes.append((outline, _rgba(skin)))
  for side in (-1, 1):  # cheeks, slightly flushed
    shapes.append((ellipse(g.cx + g.dx + side * 0.27 * g.fw, g.mouth_y - 0.06 * g.fh, 0.08 * g.fw,
                           0.05 * g.fh), _rgba(skin * [1.0, 0.9, 0.9], 110)))  # fmt: skip
  shapes += _marks(f, g)
  shapes += _nose_and_mouth(f, g, smile)
  shapes += _facial_hair(f, g, outline, hair)
  shapes += front
  shapes += _eyes(f, g, brows)
  return shapes, g


def render_face(
  params: np.ndarray,
  view: View,
  resolution: int,
  *,
  smile: bool = False,
  accessories: Callable[[FaceGeometry], Sequence[Polygon]] = lambda g: (),
  background: Callable[[int], np.ndarray] | None = None,
) -> np.ndarray:
  """One photo of an identity: uint8 [resolution, resolution, 3].

  accessories(geometry): polygons in the face's units, drawn over it and framed with it (hats,
  glasses); background(size) -> uint8 [size, size, 3]: a scene behind the head instead of the
  view's plain backdrop (not framed).
  """
  shapes, geometry = face_polygons(params, view, smile)
  angle = np.deg2rad(view.angle)
  frame = view.scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  size = resolution * _SUPERSAMPLE
  if background is None:
    canvas = Image.new("RGB", (size, size), _rgba(view.backdrop)[:3])
  else:
    canvas = Image.fromarray(np.asarray(background(size), np.uint8), "RGB")
  draw = ImageDraw.Draw(canvas, "RGBA")
  for points, fill in [*shapes, *accessories(geometry)]:
    framed = ((points - 0.5) @ frame.T + 0.5 + np.asarray(view.shift)) * size
    draw.polygon([tuple(p) for p in framed.tolist()], fill=tuple(fill))
  image = canvas.reduce(_SUPERSAMPLE)  # box filter: antialiased edges

  coords = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution * 2 - 1
  light = np.cos(view.light_angle) * coords[None, :] + np.sin(view.light_angle) * coords[:, None]
  gain = (view.exposure * (1 + view.light_strength * light))[..., None].astype(np.float32)
  return np.clip(np.asarray(image, np.float32) * gain + 0.5, 0, 255).astype(np.uint8)
