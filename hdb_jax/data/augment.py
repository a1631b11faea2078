"""Augmentation for hypernetwork training: a small colour jitter (config.data.augment) and, only
where no per-image target depends on the orientation, a horizontal flip (config.data.flip).

Phase 1 does not flip. Its target for a photo is the LiDB weight set Phase 0 fitted to that photo,
and a face is not symmetric (hair parting, moles, lighting): a mirrored photo paired with those
weights teaches the hypernetwork that both orientations map to one weight set, i.e. to predict
weights that draw one of them wrong. (Flipping in Phase 0 too would instead fit every target to a
mirror-averaged face.) The iterator refuses flip=True beside Phase 0 weights.

Pure numpy, and deterministic: the randomness of one example comes from (seed, epoch, index), so a
restored data position reproduces the same augmented batch.
"""

import numpy as np


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
  return np.random.default_rng([int(seed), int(epoch), int(index), 0xA06])


def augment_image(
  image: np.ndarray, rng: np.random.Generator, *, flip: bool = True, color_jitter: float = 0.05
) -> np.ndarray:
  """image: float32 [H, W, 3] in [-1, 1] -> the same, flipped left-right with probability 1/2 (if
  `flip`), then brightness shifted by up to +-color_jitter of the range, contrast and saturation
  scaled by up to 1 +- 2 color_jitter, clipped to [-1, 1]."""
  if flip and rng.random() < 0.5:
    image = image[:, ::-1]
  if color_jitter > 0:
    brightness, contrast, saturation = 2 * color_jitter * rng.uniform(-1, 1, 3)
    mean = image.mean()
    image = (image - mean) * np.float32(1 + contrast) + mean + np.float32(brightness)
    grey = image.mean(axis=-1, keepdims=True)
    image = grey + (image - grey) * np.float32(1 + saturation)
    image = np.clip(image, -1, 1)
  return np.ascontiguousarray(image, dtype=np.float32)
