"""The one place that imports diffusers and transformers model classes.

Everything outside this package sees `StableDiffusion` bundles, parameter pytrees and the pure
functions in `functional`.
"""

from hdb_jax.runtime.quiet import silence_flax_deprecations

silence_flax_deprecations()

# pylint: disable=wrong-import-position
from hdb_jax.models import configs
from hdb_jax.models.functional import (
  check_token,
  encode_text,
  tokenize,
  unet_apply,
  vae_decode,
  vae_encode,
)
from hdb_jax.models.loading import (
  ModelLoadError,
  StableDiffusion,
  abstract_params,
  config_fingerprint,
  convert_pytorch_state_dict,
  load_stable_diffusion,
  resolve_pretrained,
  with_memory_efficient_attention,
)
from hdb_jax.models.pretrained import load_model
from hdb_jax.models.tiny import create_tiny_stable_diffusion

__all__ = [
  "configs",
  "check_token",
  "encode_text",
  "tokenize",
  "unet_apply",
  "vae_decode",
  "vae_encode",
  "ModelLoadError",
  "StableDiffusion",
  "abstract_params",
  "config_fingerprint",
  "convert_pytorch_state_dict",
  "load_stable_diffusion",
  "resolve_pretrained",
  "with_memory_efficient_attention",
  "create_tiny_stable_diffusion",
  "load_model",
]
