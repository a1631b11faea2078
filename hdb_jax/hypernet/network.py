"""The whole hypernetwork: image encoder + decoder, built from a config for one base model.

net = build_hypernet(config, base)        # config: configs/hyper.py's encoder + model fields
params = net.init_params(rng, theta_init) # {'decoder': ..., 'encoder': ... (only when trained)}
packed = net.predict(params, encoder_params, images)   # [B, D] packed LiDB vectors
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hdb_jax import adapters
from hdb_jax.adapters import LidbParams, Packer
from hdb_jax.diffusion.base import BaseModel
from hdb_jax.hypernet.decoder import WeightDecoder
from hdb_jax.hypernet.encoders import load_encoder
from hdb_jax.hypernet.slots import SlotLayout, slot_layout
from hdb_jax.models.image_encoder import ImageEncoder, image_features


@dataclasses.dataclass(frozen=True)
class Hypernet:
  """The modules (stateless) and layout of one hypernetwork; parameters live outside."""

  encoder: ImageEncoder
  decoder: WeightDecoder
  layout: SlotLayout
  packer: Packer
  train_encoder: bool

  def init_params(self, rng: jax.Array, theta_init: np.ndarray | None = None) -> dict[str, Any]:
    """Trainable parameters; theta_init [D] (packed LiDB) is the prediction at initialisation."""
    tokens = jnp.zeros((1, self.encoder.num_tokens, self.encoder.hidden_size), jnp.float32)
    decoder = self.decoder.init(rng, tokens)["params"]
    if theta_init is not None:
      decoder = {
        **decoder,
        "theta_init": self.layout.to_slots(jnp.asarray(theta_init, jnp.float32)),
      }
    params = {"decoder": decoder}
    if self.train_encoder:
      params["encoder"] = self.encoder.params
    return params

  def encoder_params(self, params: dict[str, Any], frozen_encoder: Any) -> Any:
    return params["encoder"] if self.train_encoder else jax.lax.stop_gradient(frozen_encoder)

  def predict(
    self,
    params: dict[str, Any],
    frozen_encoder: Any,
    images: jax.Array,
    refine_steps: int | None = None,
  ) -> jax.Array:
    """images [B, H, W, 3] in [-1, 1] -> packed LiDB vectors [B, D] (the image features are computed
    once)."""
    tokens = image_features(self.encoder, self.encoder_params(params, frozen_encoder), images)
    slots = self.decoder.apply(
      {"params": params["decoder"]}, tokens.astype(jnp.float32), refine_steps
    )
    return self.layout.to_packed(slots)

  @functools.cached_property
  def jitted_predict(self) -> Callable[..., jax.Array]:
    """`predict` under one jax.jit kept with the network (refine_steps static): traced once per
    shape."""
    return jax.jit(self.predict, static_argnums=(3,))

  def unpack(self, packed: jax.Array) -> LidbParams:
    return self.packer.unpack(packed)


def build_hypernet(
  config: ml_collections.ConfigDict, base: BaseModel, encoder: ImageEncoder | None = None
) -> Hypernet:
  """config.encoder (pretrained, revision, trainable) and config.model (decoder sizes) for base's
  layers; `encoder`: the image encoder to use instead of loading config.encoder.pretrained (e.g.
  models.image_encoder.abstract_image_encoder's, for compiling ahead of time)."""
  if encoder is None:
    encoder = load_encoder(config.encoder.pretrained, config.encoder.get("revision") or None)
  layout = slot_layout(base.layers, base.lidb_config)
  m = config.model
  decoder = WeightDecoder(
    slot_sizes=layout.sizes,
    d_model=m.d_model,
    num_heads=m.num_heads,
    depth=m.depth,
    mlp_dim=m.mlp_dim,
    refine_steps=m.refine_steps,
    head_init_std=m.head_init_std,
  )
  return Hypernet(
    encoder=encoder,
    decoder=decoder,
    layout=layout,
    packer=adapters.lidb_packer(base.layers, base.lidb_config),
    train_encoder=bool(config.encoder.trainable),
  )
