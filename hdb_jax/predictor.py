"""The interface between Phase 2 and a hypernetwork: images in, LiDB weights out.

Personalization only needs `LidbPredictor`; the hypernetwork (Phase 1) provides one from its
checkpoint through `load_predictor`.
"""

import os
from typing import Protocol

import jax

from hdb_jax.adapters import LidbParams
from hdb_jax.base_model import BaseModel
from hdb_jax.errors import MissingFileError


class LidbPredictor(Protocol):
  """images [B, H, W, 3] in [-1, 1] -> LiDB params with a leading batch axis B, for base.layers."""

  def __call__(self, images: jax.Array) -> LidbParams:
    ...


def load_predictor(path: str, base: BaseModel, refine_steps: int | None = None) -> LidbPredictor:
  """A predictor from a hypernetwork training directory, checked against the base model's layers.

  refine_steps overrides the trained number of refinement iterations (1: the k=1 ablation).
  """
  if not os.path.isdir(path):
    raise MissingFileError(f"hypernetwork checkpoint not found: {path}")
  from hdb_jax.hypernet import checkpoint  # pylint: disable=import-outside-toplevel
  return checkpoint.load_predictor(path, base, refine_steps)
