"""The interface between Phase 2 and a hypernetwork: images in, LiDB weights out.

Personalization only needs a `LidbPredictor`; `HypernetPredictor` is the trained hypernetwork's
(hdb_jax.formats.hypernet_loading.load_predictor makes one from a checkpoint or an export).
"""

import dataclasses
from typing import Any, Protocol

import jax

from hdb_jax.adapters import LidbParams
from hdb_jax.hypernet.network import Hypernet


class LidbPredictor(Protocol):
  """images [B, H, W, 3] in [-1, 1] -> LiDB params with a leading batch axis B, for base.layers."""

  def __call__(self, images: jax.Array) -> LidbParams: ...


@dataclasses.dataclass(frozen=True)
class HypernetPredictor:
  """images [B, H, W, 3] in [-1, 1] -> LiDB params (leading batch axis), from trained hypernetwork
  params."""

  net: Hypernet
  params: Any
  step: int
  refine_steps: int | None = None

  def __call__(self, images: jax.Array) -> LidbParams:
    return self.net.unpack(
      self.net.jitted_predict(self.params, self.net.encoder.params, images, self.refine_steps)
    )
