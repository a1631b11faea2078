"""Config pieces shared by every phase (configs/*.py): the base model, the adapters, the optimizer."""

import ml_collections

from hdb_jax.adapters.targets import DEFAULT_TARGETS
from hdb_jax.data import default_data_config

SD15 = "runwayml/stable-diffusion-v1-5"


def base_config(variant: str) -> ml_collections.ConfigDict:
  """Fields read by hdb_jax.base_model.setup_base_model, for SD1.5 or (variant 'tiny') the tiny model."""
  tiny = variant == "tiny"
  config = ml_collections.ConfigDict()
  config.pretrained = "tiny" if tiny else SD15  # hub id, local diffusers dir, or 'tiny[:DIR]'
  config.revision = ml_collections.config_dict.placeholder(str)
  config.compute_dtype = "float32" if tiny else "bfloat16"  # frozen model's compute; trainables stay fp32
  config.targets = list(DEFAULT_TARGETS)
  config.lidb = ml_collections.ConfigDict(dict(a=100, b=50, rank=1, aux_seed=0, aux_scale=1.0,
                                               a_init_std=1.0, b_init_std=1e-3))
  config.token = "sks"
  config.prompt = "a {token} face"
  config.seed = 0
  config.compilation_cache = True
  config.compilation_cache_dir = ""  # empty: ~/.cache/hdb_jax/jax_cache
  config.data = default_data_config()
  if not tiny:
    config.data.source = "tfds:celeb_a_hq/512"
  return config


def optimizer_config(learning_rate: float, **overrides) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(optimizer="adam", learning_rate=learning_rate, weight_decay=0.0,
                                        grad_clip=1.0, schedule="constant", warmup_steps=0, **overrides))
