"""The evaluation models: CLIP (image and text embeddings) and DINO (ViT CLS embeddings).

    # a hub id, a local dir, or 'tiny-clip[:DIR]'
    clip = load_eval_model("openai/clip-vit-base-patch32", "clip")
    dino = load_eval_model("facebook/dino-vits16", "dino")          # or 'tiny-dino[:DIR]'
    # [N, D] (CLIP: projected image features; DINO: last-layer CLS)
    image_embeddings(clip, images_uint8)
    text_embeddings(clip, ["a face"])      # [N, D] projected text features

Weights load from flax_model.msgpack (transformers' Flax `from_pretrained`) or from PyTorch
model.safetensors (converted on load); pickled weights are refused. Pixels are resized (antialiased
bicubic) to the model's image size and normalized with the mean/std of its preprocessor_config.json.
Tiny random models are written with `save_pretrained` and read back through the same code.
"""

import dataclasses
import functools
import json
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from hdb_jax.models.configs import TINY_VISION
from hdb_jax.models.loading import ModelLoadError, load_transformers_flax, resolve_pretrained
from hdb_jax.models.tiny import default_tiny_dir, random_params, tiny_text_config
from hdb_jax.models.tokenizer import pad_to_length, write_tiny_tokenizer
from hdb_jax.runtime.quiet import silence_flax_deprecations

silence_flax_deprecations()

# pylint: disable=wrong-import-position
from transformers import CLIPConfig, CLIPTokenizer, FlaxCLIPModel, FlaxViTModel, ViTConfig

CLIP_STATS = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# kind -> (model_type in config.json, Flax class, extra from_pretrained kwargs, default pixel stats)
KINDS = {
  "clip": ("clip", FlaxCLIPModel, {}, CLIP_STATS),
  "dino": ("vit", FlaxViTModel, {"add_pooling_layer": False}, IMAGENET_STATS),
}
PREPROCESSOR_CONFIG = "preprocessor_config.json"


@dataclasses.dataclass(frozen=True, eq=False)
class EvalModel:
  """A stateless transformers Flax model, its parameters, and how it wants its pixels and text."""

  kind: str  # 'clip' | 'dino'
  model: Any  # FlaxCLIPModel | FlaxViTModel (created with _do_init=False)
  params: Any
  image_size: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  tokenizer: CLIPTokenizer | None
  source: str


def _small_normal_embeddings(params: Any, seed: int) -> Any:
  """random_params leaves class tokens and position tables at zero: give them N(0, 0.02^2)."""
  rng = np.random.default_rng(seed + 1)
  flat = traverse_util.flatten_dict(params)
  for path, value in sorted(flat.items()):
    if path[-1] in ("class_embedding", "cls_token", "position_embeddings"):
      flat[path] = (0.02 * rng.standard_normal(value.shape)).astype(np.float32)
  return traverse_util.unflatten_dict(flat)


def create_tiny_eval_model(directory: str, kind: str, seed: int = 0) -> str:
  """Writes a tiny random CLIP (with the tiny tokenizer) or DINO ViT to `directory` unless one is
  there.

  preprocessor_config.json is written last and marks a complete model."""
  if os.path.exists(os.path.join(directory, PREPROCESSOR_CONFIG)):
    return directory
  os.makedirs(directory, exist_ok=True)
  _, cls, kwargs, (mean, std) = KINDS[kind]
  if kind == "clip":
    tokenizer = write_tiny_tokenizer(directory)
    special = {
      "bos_token_id": tokenizer.bos_token_id,
      "eos_token_id": tokenizer.eos_token_id,
      "pad_token_id": tokenizer.pad_token_id,
    }  # the text features are read at the first EOS
    config = CLIPConfig(
      text_config={**tiny_text_config(len(tokenizer)), **special},
      vision_config=TINY_VISION,
      projection_dim=32,
    )
  else:
    config = ViTConfig(**TINY_VISION)
  model = cls(config, _do_init=False, **kwargs)
  abstract = jax.eval_shape(
    lambda rng: model.init_weights(rng, model.input_shape), jax.random.key(0)
  )
  model.save_pretrained(
    directory, params=_small_normal_embeddings(random_params(abstract, seed), seed)
  )
  with open(os.path.join(directory, PREPROCESSOR_CONFIG), "w", encoding="utf-8") as f:
    json.dump({"image_mean": list(mean), "image_std": list(std)}, f)
  return directory


def resolve_eval_model_dir(pretrained: str, kind: str, revision: str | None = None) -> str:
  """'tiny-clip[:DIR]' / 'tiny-dino[:DIR]' (made on first use), a local directory, or a hub
  snapshot."""
  tiny = f"tiny-{kind}"
  if pretrained == tiny or pretrained.startswith(tiny + ":"):
    directory = pretrained.partition(":")[2] or os.path.join(
      os.path.dirname(default_tiny_dir()), tiny
    )
    return create_tiny_eval_model(directory, kind)
  return resolve_pretrained(pretrained, revision)


def pixel_stats(directory: str, default: tuple) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """(mean, std) of the model's preprocessor_config.json, else `default`."""
  path = os.path.join(directory, PREPROCESSOR_CONFIG)
  if not os.path.exists(path):
    return default
  with open(path, encoding="utf-8") as f:
    config = json.load(f)
  return tuple(config.get("image_mean", default[0])), tuple(config.get("image_std", default[1]))


def load_eval_model(pretrained: str, kind: str, revision: str | None = None) -> EvalModel:
  """A CLIP ('clip') or DINO ('dino') model from a hub id, a local directory or
  'tiny-<kind>[:DIR]'."""
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
  model_type, cls, kwargs, default_stats = KINDS[kind]
  directory = resolve_eval_model_dir(pretrained, kind, revision)
  config_path = os.path.join(directory, "config.json")
  if not os.path.exists(config_path):
    raise ModelLoadError(f"{directory} has no config.json: not a transformers model directory")
  with open(config_path, encoding="utf-8") as f:
    found = json.load(f).get("model_type")
  if found != model_type:
    raise ModelLoadError(
      f"{config_path}: model_type {found!r}, a {kind} model needs {model_type!r}"
    )
  model, params = load_transformers_flax(directory, cls, kind, **kwargs)
  tokenizer = CLIPTokenizer.from_pretrained(directory) if kind == "clip" else None
  vision = model.config.vision_config if kind == "clip" else model.config
  mean, std = pixel_stats(directory, default_stats)
  return EvalModel(
    kind=kind,
    model=model,
    params=params,
    image_size=int(vision.image_size),
    mean=mean,
    std=std,
    tokenizer=tokenizer,
    source=pretrained,
  )


@functools.lru_cache(maxsize=16)
def _image_fn(m: EvalModel):
  size = m.image_size

  def embed(params, images):
    x = images.astype(jnp.float32) / 255.0
    if x.shape[1:3] != (size, size):
      x = jax.image.resize(x, (x.shape[0], size, size, 3), "cubic", antialias=True)
    x = (x - jnp.asarray(m.mean)) / jnp.asarray(m.std)
    pixels = jnp.transpose(x, (0, 3, 1, 2))  # transformers' Flax models take NCHW
    if m.kind == "clip":
      return m.model.get_image_features(pixels, params=params)
    return m.model(pixels, params=params).last_hidden_state[:, 0]

  return jax.jit(embed)


@functools.lru_cache(maxsize=16)
def _text_fn(m: EvalModel):
  return jax.jit(lambda params, ids, mask: m.model.get_text_features(ids, mask, params=params))


def _batched(fn, arrays: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
  """fn over fixed-size batches (the last one padded with copies of the first row): one compile."""
  n = len(arrays[0])
  pad = -n % batch_size
  padded = [np.concatenate([a, np.repeat(a[:1], pad, axis=0)]) if pad else a for a in arrays]
  out = [
    np.asarray(fn(*[a[i : i + batch_size] for a in padded])) for i in range(0, n + pad, batch_size)
  ]
  return np.concatenate(out)[:n]


def image_embeddings(m: EvalModel, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
  """images uint8 [N, H, W, 3] (square) -> float32 [N, D]."""
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != images.shape[2]:
    raise ValueError(
      f"expected square uint8 images [N, H, W, 3], got {images.dtype} {images.shape}"
    )
  fn = _image_fn(m)
  return _batched(lambda x: fn(m.params, x), [images], batch_size)


def text_embeddings(m: EvalModel, texts: Sequence[str], batch_size: int = 8) -> np.ndarray:
  """texts -> float32 [N, D] (CLIP only)."""
  if m.kind != "clip":
    raise ValueError(f"a {m.kind} model has no text tower")
  tokens = pad_to_length(m.tokenizer, texts)
  fn = _text_fn(m)
  ids, mask = tokens.input_ids.astype(np.int32), tokens.attention_mask.astype(np.int32)
  return _batched(lambda i, a: fn(m.params, i, a), [ids, mask], batch_size)
