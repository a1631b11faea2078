"""The hypernetwork's image encoder: a transformers Flax ViT or CLIP vision tower (the world
recognizer's CNN is another: hdb_jax.hypernet.encoders).

    encoder = load_image_encoder("google/vit-huge-patch14-224-in21k")   # the paper's ViT-H/14
    encoder = load_image_encoder("tiny-vit")  # tiny random, made on first use
    encoder = load_image_encoder("world-vit")  # a random 64 px ViT to train with the world's
    tokens = image_features(encoder, encoder.params, images)  # [-1, 1] NHWC -> [B, T, hidden]

A local directory or hub id holding a `ViTModel`, `CLIPVisionModel` or `CLIPModel` config (Flax
msgpack, or PyTorch safetensors converted on load) works; tiny encoders are saved with
`save_pretrained` and read back through the same code.
"""

import dataclasses
import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp

from hdb_jax.models.configs import TINY_VISION, WORLD_VISION
from hdb_jax.models.eval_models import CLIP_STATS, pixel_stats
from hdb_jax.models.loading import (
  ModelLoadError,
  load_transformers_flax,
  read_json,
  resolve_pretrained,
)
from hdb_jax.models.tiny import default_tiny_dir, random_params
from hdb_jax.runtime.quiet import silence_flax_deprecations

silence_flax_deprecations()

# pylint: disable=wrong-import-position
from transformers import CLIPVisionConfig, FlaxCLIPVisionModel, FlaxViTModel, ViTConfig

TINY_ENCODER = "tiny-vit"
# names of random ViTs made on first use ('<name>[:DIR]') -> their ViTConfig fields
RANDOM_ENCODERS = {TINY_ENCODER: TINY_VISION, "world-vit": WORLD_VISION}
# model_type in config.json -> (model class, config class, default pixel stats;
# preprocessor_config.json wins)
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # google/vit-* checkpoints
ENCODER_TYPES = {
  "vit": (FlaxViTModel, ViTConfig, HALF),
  "clip_vision_model": (FlaxCLIPVisionModel, CLIPVisionConfig, CLIP_STATS),
  "clip": (FlaxCLIPVisionModel, CLIPVisionConfig, CLIP_STATS),
}


@dataclasses.dataclass(frozen=True)
class ImageEncoder:
  """A stateless image encoder, its parameters, and how it wants its pixels.

  apply(params, pixels [B, S, S, 3] normalized) -> tokens [B, num_tokens, hidden_size].
  """

  apply: Callable[[Any, jax.Array], jax.Array]
  params: Any
  image_size: int
  hidden_size: int
  num_tokens: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  source: str


def _transformer_tokens(module: Any, params: Any, pixels: jax.Array) -> jax.Array:
  outputs = module.apply({"params": params}, pixels.astype(module.dtype), deterministic=True)
  return outputs.last_hidden_state


def create_random_image_encoder(
  directory: str, vision: dict[str, Any] | None = None, seed: int = 0
) -> str:
  """Writes a random ViT (Flax weights; `vision`: ViTConfig fields, default TINY_VISION) to
  `directory` unless one is there; returns it."""
  if os.path.exists(os.path.join(directory, "flax_model.msgpack")):
    return directory
  config = ViTConfig(**(vision or TINY_VISION))
  model = FlaxViTModel(config, add_pooling_layer=False, _do_init=False)
  abstract = jax.eval_shape(
    lambda rng: model.init_weights(rng, model.input_shape), jax.random.key(0)
  )
  model.save_pretrained(directory, params=random_params(abstract, seed))
  return directory


def _resolve(pretrained: str, revision: str | None) -> str:
  name, _, directory = pretrained.partition(":")
  if name in RANDOM_ENCODERS:
    default = os.path.join(os.path.dirname(default_tiny_dir()), name)
    return create_random_image_encoder(directory or default, RANDOM_ENCODERS[name])
  return resolve_pretrained(pretrained, revision)


def _encoder_type(directory: str) -> tuple[Any, Any, tuple]:
  """(model class, config class, default pixel stats) of the encoder saved in `directory`."""
  config_path = os.path.join(directory, "config.json")
  model_type = read_json(config_path).get("model_type")
  if model_type not in ENCODER_TYPES:
    raise ModelLoadError(
      f"{config_path}: model_type {model_type!r} is not an image encoder this project "
      f"loads ({', '.join(sorted(ENCODER_TYPES))})"
    )
  return ENCODER_TYPES[model_type]


def _image_encoder(model: Any, config: Any, params: Any, stats: tuple, source: str) -> ImageEncoder:
  image_size, patch = int(config.image_size), int(config.patch_size)
  return ImageEncoder(
    apply=functools.partial(_transformer_tokens, model.module),
    params=params,
    image_size=image_size,
    hidden_size=int(config.hidden_size),
    num_tokens=(image_size // patch) ** 2 + 1,  # patches plus the class token
    mean=tuple(stats[0]),
    std=tuple(stats[1]),
    source=source,
  )


def _model_kwargs(model_cls: Any) -> dict[str, Any]:
  return {"add_pooling_layer": False} if model_cls is FlaxViTModel else {}  # tokens only


def load_image_encoder(
  pretrained: str, revision: str | None = None, dtype: Any = jnp.float32
) -> ImageEncoder:
  """An image encoder from 'tiny-vit[:DIR]' / 'world-vit[:DIR]', a local directory or a hub id
  (ModelLoadError if unusable)."""
  directory = _resolve(pretrained, revision)
  model_cls, config_cls, default_stats = _encoder_type(directory)
  model, params = load_transformers_flax(
    directory, model_cls, "image encoder", dtype=dtype, **_model_kwargs(model_cls)
  )
  config = config_cls.from_pretrained(directory)
  return _image_encoder(model, config, params, pixel_stats(directory, default_stats), pretrained)


def _config_dir(pretrained: str, revision: str | None) -> str:
  """A directory holding `pretrained`'s config.json (and preprocessor_config.json if it has one):
  itself, or a hub snapshot of those two files alone."""
  if os.path.isdir(os.path.expanduser(pretrained)):
    return os.path.expanduser(pretrained)
  import huggingface_hub  # pylint: disable=import-outside-toplevel

  try:
    return huggingface_hub.snapshot_download(
      pretrained, revision=revision, allow_patterns=["config.json", "preprocessor_config.json"]
    )
  except Exception as e:  # offline, unknown, gated: the hub raises many types
    raise ModelLoadError(f"could not fetch {pretrained!r}'s config ({type(e).__name__})") from e


def abstract_image_encoder(
  pretrained: str, revision: str | None = None, dtype: Any = jnp.float32
) -> ImageEncoder:
  """The encoder `load_image_encoder(pretrained)` loads, with jax.ShapeDtypeStruct parameters:
  only its config is read (a random encoder not made yet is described from its fields)."""
  name, _, directory = pretrained.partition(":")
  made = directory and os.path.exists(os.path.join(directory, "config.json"))
  if name in RANDOM_ENCODERS and not made:
    model_cls, config_cls, stats = FlaxViTModel, ViTConfig, HALF
    config = ViTConfig(**RANDOM_ENCODERS[name])
  else:
    directory = directory if name in RANDOM_ENCODERS else _config_dir(pretrained, revision)
    model_cls, config_cls, default_stats = _encoder_type(directory)
    config, stats = config_cls.from_pretrained(directory), pixel_stats(directory, default_stats)
  model = model_cls(config, dtype=dtype, _do_init=False, **_model_kwargs(model_cls))
  params = jax.eval_shape(lambda r: model.init_weights(r, model.input_shape), jax.random.key(0))
  return _image_encoder(model, config, params, stats, pretrained)


def image_features(encoder: ImageEncoder, params: Any, images: jax.Array) -> jax.Array:
  """images [B, H, W, 3] in [-1, 1] -> the last hidden states [B, T, hidden] (resized and
  normalized)."""
  size = encoder.image_size
  if images.shape[1:3] != (size, size):
    images = jax.image.resize(images, (images.shape[0], size, size, images.shape[3]), "bilinear")
  pixels = ((images + 1.0) / 2.0 - jnp.asarray(encoder.mean)) / jnp.asarray(encoder.std)
  return encoder.apply(params, pixels)
