"""World images: a procedural face (world.truth.faces) in a scene (world.truth.scene).

    image = render(identity_id=3, view_id=1, scene=Scene(headwear="red hat"), resolution=64)

A pure function of (seed, identity id, view id, scene, resolution): the identity sets the face, the
view its clothing, framing, head turn and lighting (and the background's details), the scene its
hat, glasses, expression, background and style.
"""

import functools

import numpy as np
from PIL import Image, ImageDraw

from hdb_jax.world.truth import faces
from hdb_jax.world.truth.scene import Scene
from hdb_jax.world.truth.styles import apply_style

HAT_COLOURS = {"red hat": (200, 30, 35), "blue hat": (30, 70, 200), "green hat": (30, 150, 50),
               "yellow hat": (235, 200, 30)}  # fmt: skip
SUNGLASS_LENS = (20, 20, 25)
FRAME = (40, 35, 30)
# background -> the sky's colour at the top and the bottom of the image (a vertical gradient)
SKIES = {
  "beach": ((90, 160, 235), (170, 215, 250)),
  "forest": ((60, 120, 60), (30, 80, 30)),
  "city": ((150, 150, 165), (110, 110, 120)),
  "night": ((8, 10, 35), (20, 25, 60)),
}


def accessories(scene: Scene, geometry: faces.FaceGeometry) -> list[faces.Polygon]:
  """Hat and glasses as polygons in the face's units (drawn over it, framed with it)."""
  g, shapes = geometry, []
  if scene.glasses != "none":
    lens_rx, lens_ry = 1.45 * g.eye_r, 1.1 * g.eye_r
    for side in (-1, 1):
      ex = g.cx + g.dx + side * g.eye_dx
      outer = faces.ellipse(ex, g.eye_y, lens_rx, lens_ry)
      inner = faces.ellipse(ex, g.eye_y, 0.85 * lens_rx, 0.8 * lens_ry)
      if scene.glasses == "sunglasses":
        shapes += [(outer, (*FRAME, 255)), (inner, (*SUNGLASS_LENS, 255))]
      else:  # a ring (outer path, then the inner one backwards): the eye shows through
        shapes.append((np.concatenate([outer, outer[:1], inner[::-1], inner[-1:]]), (*FRAME, 255)))
    bridge_y = g.eye_y - 0.3 * g.eye_r
    left, right = g.cx + g.dx - g.eye_dx + lens_rx, g.cx + g.dx + g.eye_dx - lens_rx
    shapes.append((faces.box(left, bridge_y, right, bridge_y + 0.2 * g.eye_r), (*FRAME, 255)))
  if scene.headwear != "none":
    colour = (*HAT_COLOURS[scene.headwear], 255)
    brim_y = g.top + 0.2 * g.fh
    crown = faces.ellipse(g.cx, brim_y, 0.5 * g.fw, 0.36 * g.fh, 180, 360)
    brim = faces.ellipse(g.cx, brim_y, 0.72 * g.fw, 0.05 * g.fh)
    shapes += [(crown, colour), (brim, colour)]
  return shapes


def background_image(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
  """uint8 [size, size, 3]: 'studio' (plain), 'beach' (sky, sea, sand), 'forest' (trees), 'city'
  (buildings with windows), 'night' (dark sky, stars, moon); details drawn from rng."""
  y = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
  if kind == "studio":
    image = np.array([200, 204, 214], np.float32)
  elif kind in SKIES:
    top, bottom = (np.array(c) for c in SKIES[kind])
    image = (1 - y) * top + y * bottom
    if kind == "beach":  # sky above the sea above the sand
      image = np.where(y < 0.55, image, np.where(y < 0.7, [40, 110, 190], [230, 205, 150]))
  else:
    raise ValueError(f"unknown background {kind!r}")
  image = np.broadcast_to(image, (size, size, 3)).astype(np.float32)
  canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")
  draw = ImageDraw.Draw(canvas)
  s = size
  if kind == "forest":
    for x in rng.uniform(0, 1, 7):
      h, w = rng.uniform(0.35, 0.6), rng.uniform(0.08, 0.14)
      draw.polygon([(s * (x - w), s * 0.75), (s * (x + w), s * 0.75), (s * x, s * (0.75 - h))],
                   fill=(20, rng.integers(70, 110), 25))  # fmt: skip
      draw.rectangle([s * (x - 0.015), s * 0.75, s * (x + 0.015), s * 0.9], fill=(80, 50, 25))
  elif kind == "city":
    x = 0.0
    while x < 1:
      w, h = rng.uniform(0.12, 0.22), rng.uniform(0.3, 0.7)
      draw.rectangle([s * x, s * (1 - h), s * (x + w), s], fill=(70, 70, 80))
      for wy in np.arange(1 - h + 0.04, 0.98, 0.08):
        for wx in np.arange(x + 0.025, x + w - 0.03, 0.05):
          draw.rectangle([s * wx, s * wy, s * (wx + 0.02), s * (wy + 0.03)], fill=(240, 220, 120))
      x += w + 0.01
  elif kind == "night":
    for sx, sy in rng.uniform(0, 1, (25, 2)):
      r = max(s / 128, 0.5)
      draw.ellipse(
        [s * sx - r, s * sy * 0.6 - r, s * sx + r, s * sy * 0.6 + r], fill=(250, 250, 230)
      )
    draw.ellipse([s * 0.78, s * 0.06, s * 0.92, s * 0.2], fill=(245, 240, 210))
  return np.asarray(canvas)


def render_params(
  params: np.ndarray,
  view: faces.View,
  scene: Scene,
  resolution: int,
  background_rng: np.random.Generator,
) -> np.ndarray:
  """The face of any parameter vector float32 [NUM_PARAMS] in a view and a scene: uint8
  [resolution, resolution, 3]; background_rng places the background's details."""
  image = faces.render_face(
    params,
    view,
    resolution,
    smile=scene.expression == "smile",
    accessories=functools.partial(accessories, scene),
    background=functools.partial(background_image, scene.background, rng=background_rng),
  )
  return apply_style(image, scene.style)


def render(
  identity_id: int,
  view_id: int = 0,
  scene: Scene | None = None,
  resolution: int = 64,
  seed: int = 0,
  *,
  view: faces.View | None = None,
) -> np.ndarray:
  """One world image: uint8 [resolution, resolution, 3] (scene None: the default Scene()). view:
  this clothing, framing and light instead of view view_id's (the background's details still
  come from view_id)."""
  background_rng = np.random.default_rng([int(seed), int(identity_id), int(view_id), 0xB6])
  return render_params(faces.identity_params(seed, identity_id),
                       view or faces.draw_view(seed, identity_id, view_id), scene or Scene(),
                       resolution, background_rng)  # fmt: skip
