"""The world's styles: deterministic image transforms that keep a face readable.

    apply_style(image, "pencil sketch")   # uint8 [H, W, 3] -> uint8 [H, W, 3]

photo (unchanged); pencil sketch (grey strokes on white paper: the image's edges, darkened tone);
pop-art (posterized to 3 levels a channel, saturated); watercolour (softened, paler, paper-toned);
pixel art (blocks of 1/16 of the side, a small palette).
"""

import numpy as np
from PIL import Image, ImageFilter, ImageOps

PIXEL_BLOCKS = 16  # pixel art: the image is PIXEL_BLOCKS x PIXEL_BLOCKS blocks


def pencil_sketch(image: np.ndarray) -> np.ndarray:
  grey = ImageOps.grayscale(Image.fromarray(image))
  edges = ImageOps.invert(grey.filter(ImageFilter.FIND_EDGES))  # dark lines on white
  tone = np.asarray(grey, np.float32) / 255
  lines = np.asarray(edges, np.float32) / 255
  paper = np.clip(0.35 + 0.65 * tone, 0, 1) ** 0.5  # light shading by the image's tone
  out = 255 * np.clip(np.minimum(lines**2, paper), 0, 1)
  return np.repeat(out[..., None], 3, axis=-1).astype(np.uint8)


def pop_art(image: np.ndarray) -> np.ndarray:
  levels = np.round(image.astype(np.float32) / 255 * 2) / 2  # 0, 0.5, 1 per channel
  mean = levels.mean(axis=-1, keepdims=True)
  saturated = np.clip(mean + 1.6 * (levels - mean), 0, 1)
  return (255 * saturated).astype(np.uint8)


def watercolour(image: np.ndarray) -> np.ndarray:
  size = image.shape[0]
  soft = Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=size / 64))
  soft = np.asarray(soft.filter(ImageFilter.ModeFilter(size=3)), np.float32) / 255
  paper = np.array([0.98, 0.96, 0.90], np.float32)
  washed = paper - 0.75 * (paper - soft)  # pigment over paper: paler, never darker than 25% ink
  return (255 * np.clip(washed, 0, 1)).astype(np.uint8)


def pixel_art(image: np.ndarray) -> np.ndarray:
  size = image.shape[0]
  small = Image.fromarray(image).resize((PIXEL_BLOCKS, PIXEL_BLOCKS), Image.Resampling.BOX)
  small = small.quantize(colors=12, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
  return np.asarray(small.convert("RGB").resize((size, size), Image.Resampling.NEAREST))


STYLES = {"photo": lambda image: image, "pencil sketch": pencil_sketch, "pop-art": pop_art,
          "watercolour": watercolour, "pixel art": pixel_art}  # fmt: skip


def apply_style(image: np.ndarray, style: str) -> np.ndarray:
  """image uint8 [H, W, 3] in `style` (one of STYLES)."""
  if style not in STYLES:
    raise ValueError(f"unknown style {style!r} (one of {sorted(STYLES)})")
  return STYLES[style](image)
