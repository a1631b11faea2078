"""A base model's identity without its weights: directory, config fingerprint, parameter shapes.

For checking that an adapter fits a model (e.g. before exporting a LoRA for it) without reading
gigabytes of weights, and for compiling a phase's programs ahead of time (`abstract_model`: the
model `load_model` loads, every parameter a jax.ShapeDtypeStruct). Agrees with
`StableDiffusion.fingerprint()` and the loaded parameter shapes.
"""

import dataclasses
import os
import tempfile
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from hdb_jax.models import configs
from hdb_jax.models.loading import (
  ModelLoadError,
  Params,
  StableDiffusion,
  abstract_params,
  check_text_width,
  config_fingerprint,
  load_scheduler,
  load_tokenizer,
  recorded_world_version,
)
from hdb_jax.models.pretrained import resolve_model_dir
from hdb_jax.models.tiny import existing_tiny_dir, is_tiny_name, write_configs
from hdb_jax.models.tokenizer import TINY_WORDS
from hdb_jax.runtime.quiet import silence_flax_deprecations

silence_flax_deprecations()

# pylint: disable=wrong-import-position
from diffusers import FlaxAutoencoderKL, FlaxUNet2DConditionModel
from transformers import CLIPTextConfig, FlaxCLIPTextModel


@dataclasses.dataclass(frozen=True)
class ModelDescription:
  """root: local diffusers-format directory; params: {'unet', 'text_encoder'} ShapeDtypeStruct
  trees."""

  root: str
  fingerprint: str
  params: dict[str, Params]


def _configs(root: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """The Flax UNet's and CLIP text encoder's configs as the loader builds them."""
  for name in ("unet", "text_encoder"):
    if not os.path.isfile(os.path.join(root, name, "config.json")):
      raise ModelLoadError(
        f"{root!r} has no {name}/config.json: not a diffusers-format Stable Diffusion directory"
      )
  unet = FlaxUNet2DConditionModel.from_config(
    FlaxUNet2DConditionModel.load_config(os.path.join(root, "unet"))
  )
  text_config = CLIPTextConfig.from_pretrained(os.path.join(root, "text_encoder"))
  return dict(unet.config), text_config.to_dict()


def describe_model(pretrained: str, revision: str | None = None) -> ModelDescription:
  """Reads only the configs of `pretrained` (as `load_model` names it); no weights are read."""
  root = resolve_model_dir(pretrained, revision)
  unet_config, text_config = _configs(root)
  return ModelDescription(
    root=root,
    fingerprint=config_fingerprint(unet_config, text_config, recorded_world_version(root)),
    params=abstract_params(unet_config, text_config),
  )


def abstract_model(
  pretrained: str, revision: str | None = None, dtype: Any = jnp.float32
) -> StableDiffusion:
  """The model `load_model(pretrained)` loads, with jax.ShapeDtypeStruct parameters (float32
  masters, as loaded). Only configs, the tokenizer and the noise schedule are read: no weights are
  read, made or downloaded (a hub id fetches its configs alone; a tiny model not made yet is
  described from models.configs)."""
  if is_tiny_name(pretrained) and existing_tiny_dir(pretrained) is None:
    tiny = (configs.TINY_UNET, configs.TINY_VAE, configs.TINY_TEXT_ENCODER)
    return abstract_model_of(*tiny, source=pretrained, dtype=dtype)
  return _abstract_from_dir(
    resolve_model_dir(pretrained, revision, weights=False), pretrained, dtype
  )


def abstract_model_of(
  unet_config: dict,
  vae_config: dict,
  text_config: dict,
  words: Sequence[str] = TINY_WORDS,
  max_length: int = 77,
  source: str = "",
  dtype: Any = jnp.float32,
) -> StableDiffusion:
  """The model `create_stable_diffusion` makes of these configs, with jax.ShapeDtypeStruct
  parameters (nothing is drawn or written but its configs and tokenizer, in a temporary
  directory)."""
  with tempfile.TemporaryDirectory() as directory:
    write_configs(directory, unet_config, vae_config, text_config, words, max_length)
    return _abstract_from_dir(directory, source, dtype)


def _abstract_from_dir(root: str, source: str, dtype: Any) -> StableDiffusion:
  for name in ("unet", "vae", "text_encoder"):
    if not os.path.isfile(os.path.join(root, name, "config.json")):
      raise ModelLoadError(
        f"{root!r} has no {name}/config.json: not a diffusers-format Stable Diffusion directory"
      )
  unet_dir, vae_dir = os.path.join(root, "unet"), os.path.join(root, "vae")
  unet = FlaxUNet2DConditionModel.from_config(
    FlaxUNet2DConditionModel.load_config(unet_dir), dtype=dtype
  )
  vae = FlaxAutoencoderKL.from_config(FlaxAutoencoderKL.load_config(vae_dir), dtype=dtype)
  text_config = CLIPTextConfig.from_pretrained(os.path.join(root, "text_encoder"))
  text_encoder = FlaxCLIPTextModel(text_config, dtype=dtype, _do_init=False)
  check_text_width(unet, text_encoder)
  rng = jax.random.key(0)
  params = {
    "unet": jax.eval_shape(unet.init_weights, rng),
    "vae": jax.eval_shape(vae.init_weights, rng),
    "text_encoder": jax.eval_shape(lambda r: text_encoder.init_weights(r, (1, 1)), rng),
  }
  scheduler, scheduler_state, scheduler_config = load_scheduler(root)
  return StableDiffusion(
    unet=unet,
    vae=vae,
    text_encoder=text_encoder,
    tokenizer=load_tokenizer(root),
    scheduler=scheduler,
    scheduler_state=scheduler_state,
    params=params,
    source=source,
    world_version=recorded_world_version(root),
    scheduler_config=scheduler_config,
  )
