"""Stable Diffusion models this project makes, in diffusers format: the tiny family (random
weights, SD1.5 topology) and the world model's random start; `save_flax_pipeline` writes one back.

Tiny models are saved with `save_pretrained` and read back through `load_stable_diffusion`, the same
code that loads the real model, so tests and the offline demo exercise the real loading path.
"""

import json
import os
import shutil
from typing import Any, Sequence

import jax
import numpy as np
from flax import traverse_util

from hdb_jax.models import configs
from hdb_jax.models.tokenizer import TINY_WORDS, write_tiny_tokenizer
from hdb_jax.runtime.quiet import silence_flax_deprecations

silence_flax_deprecations()

# pylint: disable=wrong-import-position
from diffusers import FlaxAutoencoderKL, FlaxUNet2DConditionModel
from transformers import CLIPTextConfig, FlaxCLIPTextModel

TINY_PREFIX = "tiny"


def write_model_index(directory: str) -> None:
  """diffusers' model_index.json, naming each component's class."""
  index = {
    "_class_name": "StableDiffusionPipeline",
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "scheduler": ["diffusers", "DDPMScheduler"],
  }
  with open(os.path.join(directory, "model_index.json"), "w", encoding="utf-8") as f:
    json.dump(index, f, indent=2)


def write_scheduler_config(directory: str) -> None:
  os.makedirs(os.path.join(directory, "scheduler"), exist_ok=True)
  config = {"_class_name": "DDPMScheduler", **configs.SD15_SCHEDULER}
  with open(
    os.path.join(directory, "scheduler", "scheduler_config.json"), "w", encoding="utf-8"
  ) as f:
    json.dump(config, f, indent=2)


def random_params(abstract: Any, seed: int) -> Any:
  """Random weights for an abstract parameter tree, drawn with numpy (no XLA compile).

  Kernels ~ N(0, 1/fan_in), embeddings ~ N(0, 0.02^2), norm scales 1, biases 0: well-scaled
  activations through a deep random network, which is all a tiny test model needs.
  """
  rng = np.random.default_rng(seed)
  flat = traverse_util.flatten_dict(abstract)
  out = {}
  for path in sorted(flat):
    shape, name = flat[path].shape, path[-1]
    if name == "kernel":
      fan_in = int(np.prod(shape[:-1]))
      value = rng.standard_normal(shape) / np.sqrt(fan_in)
    elif name == "embedding":
      value = 0.02 * rng.standard_normal(shape)
    elif name == "scale":
      value = np.ones(shape)
    else:
      value = np.zeros(shape)
    out[path] = value.astype(np.float32)
  return traverse_util.unflatten_dict(out)


def tiny_text_config(vocab_size: int) -> dict:
  return {**configs.TINY_TEXT_ENCODER, "vocab_size": vocab_size}


def create_stable_diffusion(
  directory: str,
  unet_config: dict,
  vae_config: dict,
  text_config: dict,
  words: Sequence[str] = TINY_WORDS,
  max_length: int = 77,
  seed: int = 0,
) -> str:
  """Writes a random Stable Diffusion (Flax weights, `random_params`) of these architectures to
  `directory`, with a tokenizer keeping `words` whole and padding to `max_length`; returns the
  directory. text_config's vocab_size is the tokenizer's. Writes model_index.json last."""
  os.makedirs(directory, exist_ok=True)
  rng = jax.random.key(0)
  tokenizer = write_tiny_tokenizer(os.path.join(directory, "tokenizer"), words, max_length)
  unet = FlaxUNet2DConditionModel.from_config(unet_config)
  unet.save_pretrained(
    os.path.join(directory, "unet"),
    params=random_params(jax.eval_shape(unet.init_weights, rng), seed),
  )
  vae = FlaxAutoencoderKL.from_config(vae_config)
  vae.save_pretrained(
    os.path.join(directory, "vae"),
    params=random_params(jax.eval_shape(vae.init_weights, rng), seed + 1),
  )
  text_config = {**text_config, "vocab_size": len(tokenizer)}
  text = FlaxCLIPTextModel(CLIPTextConfig(**text_config), _do_init=False)
  text_params = random_params(jax.eval_shape(lambda r: text.init_weights(r, (1, 1)), rng), seed + 2)
  text.save_pretrained(os.path.join(directory, "text_encoder"), params=text_params)
  write_scheduler_config(directory)
  write_model_index(directory)
  return directory


def write_configs(
  directory: str,
  unet_config: dict,
  vae_config: dict,
  text_config: dict,
  words: Sequence[str] = TINY_WORDS,
  max_length: int = 77,
) -> str:
  """What `create_stable_diffusion` writes, without weights: each model's config.json, the
  tokenizer, the noise schedule and model_index.json (enough for `describe.abstract_model`)."""
  tokenizer = write_tiny_tokenizer(os.path.join(directory, "tokenizer"), words, max_length)
  FlaxUNet2DConditionModel.from_config(unet_config).save_config(os.path.join(directory, "unet"))
  FlaxAutoencoderKL.from_config(vae_config).save_config(os.path.join(directory, "vae"))
  text_config = CLIPTextConfig(**{**text_config, "vocab_size": len(tokenizer)})
  text_config.save_pretrained(os.path.join(directory, "text_encoder"))
  write_scheduler_config(directory)
  write_model_index(directory)
  return directory


def create_tiny_stable_diffusion(
  directory: str, seed: int = 0, unet_config: dict | None = None
) -> str:
  """Writes a tiny random Stable Diffusion (Flax weights) to `directory`; returns the directory.

  unet_config: the UNet's config (default configs.TINY_UNET; configs.MICRO_UNET is shallower).

  Does nothing when a complete model is already there (model_index.json is written last).
  """
  if os.path.exists(os.path.join(directory, "model_index.json")):
    return directory
  return create_stable_diffusion(
    directory,
    unet_config or configs.TINY_UNET,
    configs.TINY_VAE,
    configs.TINY_TEXT_ENCODER,
    seed=seed,
  )


def save_flax_pipeline(sd: Any, params: dict[str, Any], root: str, out_dir: str) -> str:
  """Writes sd's modules with `params` {'unet', 'vae', 'text_encoder'} (Flax msgpack) to out_dir,
  with root's tokenizer and scheduler; model_index.json last. Returns out_dir."""
  os.makedirs(out_dir, exist_ok=True)
  sd.unet.save_pretrained(os.path.join(out_dir, "unet"), params=jax.device_get(params["unet"]))
  sd.vae.save_pretrained(os.path.join(out_dir, "vae"), params=jax.device_get(params["vae"]))
  sd.text_encoder.save_pretrained(
    os.path.join(out_dir, "text_encoder"), params=jax.device_get(params["text_encoder"])
  )
  for name in ("tokenizer", "scheduler"):
    shutil.copytree(os.path.join(root, name), os.path.join(out_dir, name), dirs_exist_ok=True)
  write_model_index(out_dir)
  return out_dir


def default_tiny_dir() -> str:
  """Where `tiny` models live unless a directory is given: $HDB_JAX_CACHE or ~/.cache/hdb_jax."""
  root = os.environ.get("HDB_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "hdb_jax"))
  return os.path.join(root, "tiny-sd")


def is_tiny_name(pretrained: str) -> bool:
  """'tiny' or 'tiny:DIR'."""
  return pretrained == TINY_PREFIX or pretrained.startswith(TINY_PREFIX + ":")


def existing_tiny_dir(pretrained: str) -> str | None:
  """The directory 'tiny[:DIR]' names when a complete tiny model is there, else None (nothing is
  made)."""
  _, _, directory = pretrained.partition(":")
  directory = directory or default_tiny_dir()
  return directory if os.path.exists(os.path.join(directory, "model_index.json")) else None


def resolve_tiny(pretrained: str) -> str:
  """Maps 'tiny' or 'tiny:DIR' to a directory holding a tiny model, creating it when missing."""
  _, _, directory = pretrained.partition(":")
  return create_tiny_stable_diffusion(directory or default_tiny_dir())
