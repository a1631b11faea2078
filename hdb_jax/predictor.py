"""The interface between Phase 2 and a hypernetwork: images in, LiDB weights out.

Personalization only needs `LidbPredictor`; the hypernetwork (Phase 1) provides one from its
checkpoint through `load_predictor`.
"""

import os
from typing import Protocol

import jax

from hdb_jax.adapters import LidbParams
from hdb_jax.base_model import BaseModel


class LidbPredictor(Protocol):
  """images [B, H, W, 3] in [-1, 1] -> LiDB params with a leading batch axis B, for base.layers."""

  def __call__(self, images: jax.Array) -> LidbParams:
    ...


def load_predictor(path: str, base: BaseModel) -> LidbPredictor:
  """A predictor from a hypernetwork checkpoint directory, checked against the base model's layers."""
  if not os.path.isdir(path):
    raise FileNotFoundError(f"hypernetwork checkpoint not found: {path}")
  try:
    from hdb_jax.hypernet import checkpoint as hypernet_checkpoint  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ValueError("this hdb_jax has no hypernetwork support yet; use --config.hypernet=none") from e
  return hypernet_checkpoint.load_predictor(path, base)
