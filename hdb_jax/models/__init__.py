"""The one place that imports diffusers and transformers model classes.

Everything outside this package sees `StableDiffusion` bundles, parameter pytrees and the pure
functions in `functional`.
"""

from hdb_jax.runtime.quiet import silence_flax_deprecations

silence_flax_deprecations()

# pylint: disable=wrong-import-position
from hdb_jax.models import configs
from hdb_jax.models.attention import ATTENTION_KINDS, attention_kernel
from hdb_jax.models.describe import abstract_model, abstract_model_of
from hdb_jax.models.functional import (
  center_vae_latents,
  check_token,
  encode_text,
  tokenize,
  unet_apply,
  vae_decode,
  vae_encode,
  vae_posterior,
)
from hdb_jax.models.loading import (
  ModelLoadError,
  StableDiffusion,
  abstract_params,
  config_fingerprint,
  convert_pytorch_state_dict,
  load_stable_diffusion,
  resolve_pretrained,
  with_attention,
  with_vae_scaling_factor,
)
from hdb_jax.models.pretrained import load_model
from hdb_jax.models.remat import (
  ENCODER_LAYERS,
  REMAT_POLICIES,
  UNET_BLOCKS,
  check_remat,
  rematerialized,
)
from hdb_jax.models.tiny import (
  create_stable_diffusion,
  create_tiny_stable_diffusion,
  save_flax_pipeline,
)

__all__ = [
  "configs",
  "ATTENTION_KINDS",
  "attention_kernel",
  "check_token",
  "encode_text",
  "tokenize",
  "unet_apply",
  "center_vae_latents",
  "vae_decode",
  "vae_encode",
  "vae_posterior",
  "ModelLoadError",
  "StableDiffusion",
  "abstract_params",
  "config_fingerprint",
  "convert_pytorch_state_dict",
  "load_stable_diffusion",
  "resolve_pretrained",
  "with_attention",
  "with_vae_scaling_factor",
  "create_stable_diffusion",
  "create_tiny_stable_diffusion",
  "save_flax_pipeline",
  "load_model",
  "ENCODER_LAYERS",
  "REMAT_POLICIES",
  "UNET_BLOCKS",
  "check_remat",
  "rematerialized",
  "abstract_model",
  "abstract_model_of",
]
