"""Image I/O: every image read (a photo -> a model input) and every image written (PNGs, grids).

Reading: one image file (or its bytes) -> float32 [resolution, resolution, 3] in [-1, 1], the only
decoding path of every data source: EXIF orientation applied, any Pillow mode converted to RGB (L,
LA, P, RGBA and other alpha modes composited onto white, CMYK, 16-bit and 32-bit grey), a centred
square crop (or the box a crop hook returns), a Lanczos (antialiased) resize, then scaled to
[-1, 1]. Every failure is an `ImageError` with one line naming the file. Pillow's decompression-bomb
limit (`PIL.Image.MAX_IMAGE_PIXELS`) is kept, and truncated files are never loaded silently.

    image = load_image("face.jpg", 512)   # np.float32 [512, 512, 3]

Writing: `to_uint8` (floats in [0, 1] -> uint8), `save_png` (atomic), `image_grid`, and
`write_images` (OUT/<identity>/<prompt slug>_<k>.png + OUT/grid.png, the layout of generate,
personalize and Phase 1 samples).
"""

import io
import os
import re
from typing import Any, Callable, Sequence

import numpy as np
from absl import logging
from PIL import Image, ImageOps, UnidentifiedImageError

from hdb_jax.errors import UserError
from hdb_jax.io.files import atomic_path

Box = tuple[int, int, int, int]  # (left, top, right, bottom) in pixels of the oriented image
CropFn = Callable[[Image.Image], Box]

_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
_WHITE = (255, 255, 255, 255)


class ImageError(UserError):
  """A file that cannot be used as an image: missing, empty, truncated, corrupt, not an image, too
  small."""


def describe(source: str | bytes | os.PathLike, name: str | None = None) -> str:
  """The name error messages use: `name`, the path, or '<N bytes>'."""
  if name is not None:
    return name
  if isinstance(source, (bytes, bytearray, memoryview)):
    return f"<{len(source)} bytes>"
  return os.fspath(source)


def center_crop_box(width: int, height: int) -> Box:
  """The largest centred square: side min(width, height)."""
  side = min(width, height)
  left, top = (width - side) // 2, (height - side) // 2
  return left, top, left + side, top + side


def to_rgb(image: Image.Image) -> Image.Image:
  """Any Pillow mode -> 'RGB'. Transparency is composited onto white; 16/32-bit grey is scaled to 8
  bits."""
  if image.mode == "RGB":
    return image
  if image.mode == "P" and "transparency" in image.info:
    image = image.convert("RGBA")
  if image.mode in _ALPHA_MODES:
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
  if image.mode.startswith("I") or image.mode == "F":
    values = np.asarray(image).astype(np.float64)
    # 16-bit files ('I;16*', or 'I' holding 16-bit values) span 0..65535; 8-bit data stored as 'I'
    # or 'F' 0..255.
    full_scale = (
      65535.0 if (image.mode.startswith("I;16") or values.max(initial=0) > 255) else 255.0
    )
    grey = np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")
  return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _check_bomb(image: Image.Image, label: str, max_pixels: int | None = None) -> None:
  """Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse those too (same limit), and
  anything over `max_pixels` (a caller's own, lower limit); from the header, before decoding."""
  pixels, bomb = image.width * image.height, Image.MAX_IMAGE_PIXELS
  if max_pixels and pixels > max_pixels and not (bomb and max_pixels > bomb):
    raise ImageError(
      f"{label}: {image.width}x{image.height} pixels exceeds the limit of {max_pixels:,} pixels"
    )
  if bomb and pixels > bomb:
    raise ImageError(
      f"{label}: {image.width}x{image.height} pixels exceeds the decompression-bomb limit "
      f"PIL.Image.MAX_IMAGE_PIXELS={bomb}"
    )


def load_image(
  source: str | bytes | os.PathLike,
  resolution: int,
  *,
  min_size: int = 64,
  upscale: bool = True,
  name: str | None = None,
  crop: CropFn | None = None,
  max_pixels: int | None = None,
) -> np.ndarray:
  """Decodes, orients, converts, crops and resizes an image file or its encoded bytes.

  Args:
    source: a path, or the encoded bytes of a file (name them with `name` for error messages).
    resolution: output side in pixels.
    min_size: images whose short side (after the crop) is below this are refused.
    upscale: an image smaller than `resolution` (but >= min_size) is upscaled with a warning if
    True,
      refused if False.
    name: how errors name the file (default: the path).
    crop: hook returning the square crop box of the oriented image (e.g. a face detector); default
      the centred square.
    max_pixels: refuse images of more pixels than this (read from the header, before decoding),
      besides Pillow's decompression-bomb limit.
  Returns:
    float32 [resolution, resolution, 3] in [-1, 1].
  Raises:
    ImageError: one line naming the file, for every way the file can be unusable.
  """
  label = describe(source, name)
  if isinstance(source, (bytes, bytearray, memoryview)):
    if len(source) == 0:
      raise ImageError(f"{label}: empty file (0 bytes)")
    # pylint: disable=unnecessary-lambda-assignment
    opener = lambda: Image.open(io.BytesIO(bytes(source)))
  else:
    path = os.fspath(source)
    if not os.path.exists(path):
      raise ImageError(f"{label}: no such file")
    if not os.path.isfile(path):
      raise ImageError(f"{label}: not a file")
    if os.path.getsize(path) == 0:
      raise ImageError(f"{label}: empty file (0 bytes)")
    opener = lambda: Image.open(path)  # pylint: disable=unnecessary-lambda-assignment
  try:
    with opener() as image:
      _check_bomb(image, label, max_pixels)
      image = _decode(image, label, resolution, min_size, upscale, crop)
  except ImageError:
    raise
  except Image.DecompressionBombError as e:
    raise ImageError(f"{label}: refused as a decompression bomb ({e})") from e
  except UnidentifiedImageError as e:
    raise ImageError(f"{label}: not an image file (or a format Pillow cannot read)") from e
  except Exception as e:  # pylint: disable=broad-except
    # Pillow's decoders report damaged data as OSError, SyntaxError, ValueError, EOFError,
    # struct.error, IndexError, ... : whichever it is, this file is unusable, and a long run must go
    # on without it.
    reason = " ".join(str(e).split()) or type(e).__name__
    raise ImageError(f"{label}: truncated or corrupt image ({reason})") from e
  return np.asarray(image, dtype=np.float32) * np.float32(1 / 127.5) - np.float32(1.0)


def _decode(
  image: Image.Image, label: str, resolution: int, min_size: int, upscale: bool, crop: CropFn | None
) -> Image.Image:
  """Open image -> RGB [resolution, resolution]; everything that decodes pixels runs here, inside
  the caller's try."""
  short = min(image.size)
  if crop is None and image.format == "JPEG" and short > 4 * resolution:
    # Let the JPEG decoder downscale by a power of two (DCT scaling, a box filter) while keeping the
    # short side >= 2 x resolution, so that the Lanczos resize below still does the final
    # antialiasing.
    scale = 2 * resolution / short
    image.draft(image.mode, (int(np.ceil(image.width * scale)), int(np.ceil(image.height * scale))))
  image.load()  # decodes everything now: a truncated file raises here, never loads silently
  try:
    image = ImageOps.exif_transpose(image)
  except Exception as e:  # pylint: disable=broad-except  (damaged EXIF; the pixels are fine)
    logging.warning("%s: unreadable EXIF orientation, image left as stored (%s)", label, e)
  image = to_rgb(image)
  box = crop(image) if crop is not None else center_crop_box(*image.size)
  side = min(box[2] - box[0], box[3] - box[1])  # after a draft, still >= 2 x resolution
  if side < min_size:
    raise ImageError(
      f"{label}: image is {image.width}x{image.height}, its (cropped) short side {side} is below "
      f"min_size={min_size}"
    )
  if side < resolution:
    if not upscale:
      raise ImageError(
        f"{label}: short side {side} is below the resolution {resolution} and upscaling is off"
      )
    logging.warning(
      "%s: short side %d is below the resolution %d; upscaling", label, side, resolution
    )
  if tuple(box) != (0, 0, image.width, image.height):
    # before the resize: resize(box=...) lets the filter reach pixels outside the box
    image = image.crop(box)
  return image.resize((resolution, resolution), Image.Resampling.LANCZOS)


def slug(text: str, limit: int = 48) -> str:
  """A file-name-safe form of a prompt (letters, digits and underscores, at most `limit`
  characters)."""
  return re.sub(r"[^a-zA-Z0-9]+", "_", text).strip("_")[:limit] or "prompt"


def save_png(path: str, image: np.ndarray) -> None:
  """uint8 [H, W, 3] -> a PNG file, written atomically."""
  with atomic_path(path) as tmp:
    Image.fromarray(image).save(tmp, format="PNG")


def write_images(
  images: np.ndarray, identity_names: Sequence[str], prompts: Sequence[str], out: str
) -> list[str]:
  """Writes OUT/<identity>/<prompt slug>_<k>.png and OUT/grid.png; returns the paths."""
  paths = []
  for i, name in enumerate(identity_names):
    for p, prompt in enumerate(prompts):
      for k in range(images.shape[2]):
        path = os.path.join(out, name, f"{slug(prompt)}_{k}.png")
        save_png(path, images[i, p, k])
        paths.append(path)
  grid = image_grid(images.reshape((-1,) + images.shape[3:]), columns=images.shape[2])
  save_png(os.path.join(out, "grid.png"), grid)
  return paths + [os.path.join(out, "grid.png")]


def to_uint8(images: Any) -> np.ndarray:
  """Floats in [0, 1], any shape -> uint8 of the same shape (rounded)."""
  return np.asarray(np.round(np.asarray(images) * 255), np.uint8)


def image_grid(images: np.ndarray, columns: int) -> np.ndarray:
  """[N, H, W, 3] uint8 -> one [rows*H, columns*W, 3] grid (blank cells black)."""
  n, h, w, c = images.shape
  rows = -(-n // columns)
  grid = np.zeros((rows * h, columns * w, c), images.dtype)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = image
  return grid
