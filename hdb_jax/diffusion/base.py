"""What every phase sets up from its config: the frozen base model and the adapter layout on it."""

import dataclasses
import functools
import logging
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hdb_jax import adapters, models
from hdb_jax.adapters import AuxBases, LayerSpec, LidbConfig
from hdb_jax.errors import ConfigError
from hdb_jax.runtime.compilation_cache import enable_compilation_cache
from hdb_jax.runtime.overview import log_parameters

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class BaseModel:
  """The loaded base model, the adapted layers, LiDB layout and the tokenized training prompt."""

  sd: models.StableDiffusion
  layers: tuple[LayerSpec, ...]
  lidb_config: LidbConfig
  aux: AuxBases
  token: str
  prompt: str
  prompt_ids: np.ndarray  # int32 [1, tokens]
  remat: str = "none"  # the UNet's per-block remat in training losses (models.REMAT_POLICIES)

  @property
  def source(self) -> str:
    return self.sd.source

  @functools.cached_property
  def vae_encoder(self) -> Callable[[Any, jax.Array], jax.Array]:
    """The VAE's posterior mean under one jax.jit kept with the model (traced once per image
    shape)."""
    return jax.jit(lambda vae_params, images: models.vae_encode(self.sd, vae_params, images))

  def prompt_batch(self, batch: int) -> jax.Array:
    return jnp.asarray(np.repeat(self.prompt_ids, batch, axis=0))


def lidb_config_from(config: ml_collections.ConfigDict) -> LidbConfig:
  return LidbConfig(**config.to_dict())


def setup_base_model(config: ml_collections.ConfigDict, abstract: bool = False) -> BaseModel:
  """config: hdb_jax.config.pieces.base_config's fields (pretrained, revision, compute_dtype,
  attention, remat, targets, lidb, token, prompt, compilation_cache[_dir]). Logs a
  parameter table of the loaded model and the adapter count.

  abstract: the model's parameters are jax.ShapeDtypeStructs, no weights are read
  (models.abstract_model; for compiling ahead of time) and the compilation cache is left alone. The
  aux bases are still regenerated: programs that close over them (Phase 0's trainer) hold them as
  constants."""
  if config.compilation_cache and not abstract:
    enable_compilation_cache(config.compilation_cache_dir or None)
  dtype = config.compute_dtype
  if dtype not in DTYPES:
    raise ConfigError(f"compute_dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
  logging.info("%s base model %s", "describing" if abstract else "loading", config.pretrained)
  load = models.abstract_model if abstract else models.load_model
  sd = load(config.pretrained, revision=config.revision or None, dtype=DTYPES[dtype])
  sd = models.with_attention(sd, config.attention)
  layers = adapters.select_layers(sd.params, tuple(config.targets))
  lidb_config = lidb_config_from(config.lidb)
  models.check_token(sd, config.token)
  if "{token}" not in config.prompt:
    raise ConfigError(f"prompt {config.prompt!r} must contain '{{token}}', e.g. 'a {{token}} face'")
  prompt = config.prompt.format(token=config.token)
  log_parameters({"base model": sd.params})
  logging.info(
    "adapted: %d layers, %s LiDB numbers (a=%d, b=%d, r=%d)",
    len(layers),
    f"{adapters.lidb_size(layers, lidb_config):,}",
    lidb_config.a,
    lidb_config.b,
    lidb_config.rank,
  )
  return BaseModel(
    sd=sd,
    layers=layers,
    lidb_config=lidb_config,
    aux=adapters.aux_bases(layers, lidb_config),
    token=config.token,
    prompt=prompt,
    prompt_ids=models.tokenize(sd, [prompt]),
    remat=models.check_remat(config.get("remat", "none")),
  )


def encode_latents(base: BaseModel, images: np.ndarray) -> jax.Array:
  """images [B, H, W, 3] in [-1, 1] -> cached latents (posterior mean) [B, H/8, W/8, 4]."""
  resolution = base.sd.resolution
  if images.shape[1:3] != (resolution, resolution):
    raise ValueError(f"images are {images.shape[1:3]}, the model wants {resolution}x{resolution}")
  return base.vae_encoder(base.sd.params["vae"], jnp.asarray(images, jnp.float32))
