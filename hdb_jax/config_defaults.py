"""Config pieces shared by every phase (configs/*.py): the base model, the adapters, the optimizer."""

import importlib.util
import os

import ml_collections

from hdb_jax.adapters.targets import DEFAULT_TARGETS
from hdb_jax.data import default_data_config
from hdb_jax.errors import MissingFileError

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


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
  config.prior = ml_collections.ConfigDict(dict(  # DreamBooth prior preservation (hdb_jax/training/prior.py)
      weight=0.0,                # off; DreamBooth uses 1.0
      class_prompt="a face",
      source="generate",         # drawn by the base model, or a data source: 'synthetic', 'folder:<path>', ...
      num_images=4 if tiny else 100,
      sample_steps=4 if tiny else 25, guidance=7.5))
  if not tiny:
    config.data.source = "tfds:celeb_a_hq/512"
  return config


def personalization_config(variant: str) -> ml_collections.ConfigDict:
  """base_config plus what Phase 2 personalization and its sampling read (personalize and evaluate)."""
  tiny = variant == "tiny"
  config = base_config(variant)
  config.image = ""             # the photo to personalize
  config.images = ""            # or several: comma-separated files, or a folder
  config.hypernet = "none"      # hypernetwork checkpoint dir, or 'none' (DreamBooth from scratch)
  config.baseline = "lidb"      # without a hypernetwork: train 'lidb' or 'lora' from scratch
  config.lora_rank = 4          # r' of the rank-relaxed finetune (and of the 'lora' baseline)
  config.steps = 40
  config.optim = optimizer_config(3e-2 if tiny else 1e-3)
  config.num_samples = 1 if tiny else 2
  config.sample_steps = 4 if tiny else 25
  config.guidance = 7.5
  config.sampler = "ddim"
  return config


def optimizer_config(learning_rate: float, **overrides) -> ml_collections.ConfigDict:
  fields = dict(optimizer="adam", learning_rate=learning_rate, weight_decay=0.0, grad_clip=1.0, schedule="constant",
                warmup_steps=0)
  return ml_collections.ConfigDict({**fields, **overrides})


REPO_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def load_repo_config(name: str, variant: str = "") -> ml_collections.ConfigDict:
  """configs/<name>.py's get_config(variant), from the configs/ folder shipped beside the package."""
  path = os.path.join(REPO_CONFIGS, f"{name}.py")
  if not os.path.exists(path):
    raise MissingFileError(f"config file {path} not found (install hdb_jax from its repository with pip -e)")
  spec = importlib.util.spec_from_file_location(f"hdb_jax_config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)
