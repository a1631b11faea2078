"""The hypernetwork's image encoders by name: the transformers ViTs of
hdb_jax.models.image_encoder, and the world recognizer's World-ID CNN.

    encoder = load_encoder("world-recognizer")    # the shipped one's ('world-recognizer:DIR')
    encoder = load_encoder("tiny-vit")            # anything load_image_encoder takes

The recognizer's CNN is the offline stand-in for the paper's pretrained ViT-H: a frozen network that
already knows identity (a ViT trained from scratch with the hypernetwork on ~1,000 world faces
learned none in 500 steps on world v1; configs/hyper.py, the world variant).
"""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from hdb_jax.errors import UserError
from hdb_jax.models.image_encoder import ImageEncoder, load_image_encoder
from hdb_jax.world.recognizer.network import RESOLUTION, load_recognizer

# 'world-recognizer[:DIR]': the world recognizer's World-ID CNN (default: the shipped one), frozen
RECOGNIZER_ENCODER = "world-recognizer"


def _recognizer_tokens(module: Any, params: Any, pixels: jax.Array) -> jax.Array:
  """The last stage's 4x4 feature map, each of its 16 tokens followed by the unit World-ID
  embedding scaled to unit RMS: [B, 16, width + embedding]."""
  embedding, tokens = module.apply({"params": params}, pixels)
  unit = embedding / jnp.maximum(jnp.linalg.norm(embedding, axis=-1, keepdims=True), 1e-6)
  unit = unit * jnp.sqrt(jnp.asarray(embedding.shape[-1], embedding.dtype))
  return jnp.concatenate(
    [tokens, jnp.broadcast_to(unit[:, None], (*tokens.shape[:2], unit.shape[-1]))], axis=-1
  )


def load_recognizer_encoder(directory: str | None = None) -> ImageEncoder:
  """The world recognizer's World-ID CNN (directory: a recognizer release; default the shipped one)
  as an image encoder over 64 px images in [-1, 1]: identity features the hypernetwork can read
  from step 0 (no pretrained ViT exists offline)."""
  recognizer = load_recognizer(directory or None)
  spec = recognizer.spec
  if spec.architecture != "cnn" or spec.face_params:
    raise UserError(f"{directory or 'the shipped recognizer'}: the encoder reads a plain World-ID "
                    "CNN (architecture 'cnn', no face parameters)")  # fmt: skip
  module = dataclasses.replace(spec.networks()[0], with_tokens=True)
  side = RESOLUTION // 2 ** len(spec.widths)
  return ImageEncoder(
    apply=functools.partial(_recognizer_tokens, module),
    params=recognizer.params["id"],
    image_size=RESOLUTION,
    hidden_size=spec.widths[-1] + spec.embedding_dim,
    num_tokens=side * side,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    source=RECOGNIZER_ENCODER + (f":{directory}" if directory else ""),
  )


def load_encoder(name: str, revision: str | None = None) -> ImageEncoder:
  """'world-recognizer[:DIR]' or anything hdb_jax.models.image_encoder.load_image_encoder takes."""
  kind, _, directory = name.partition(":")
  if kind == RECOGNIZER_ENCODER:
    return load_recognizer_encoder(directory or None)
  return load_image_encoder(name, revision)
