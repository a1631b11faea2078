"""Load a base model by the name a config gives: a hub id, a local diffusers directory, 'world'
(the world model hdb_jax ships) or 'tiny[:DIR]'.

sd = load_model("stable-diffusion-v1-5/stable-diffusion-v1-5")   # or a directory, "world", "tiny"
"""

import dataclasses
import os

from hdb_jax.models.loading import (
  ModelLoadError,
  StableDiffusion,
  load_stable_diffusion,
  resolve_pretrained,
)
from hdb_jax.models.tiny import is_tiny_name, resolve_tiny

WORLD = "world"
# The shipped world model: a diffusers directory inside the package (fp16 PyTorch safetensors).
WORLD_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "world-sd")


def world_model_dir() -> str:
  """The shipped world model's directory (ModelLoadError saying how to make one when absent)."""
  if not os.path.isfile(os.path.join(WORLD_DIR, "model_index.json")):
    raise ModelLoadError(
      f"the world model is not in this installation ({WORLD_DIR}); train one with "
      "`python -m hdb_jax.world.pretrain --config=configs/world.py --workdir=DIR` and pass "
      "--config.pretrained=DIR/release"
    )
  return WORLD_DIR


def resolve_model_dir(pretrained: str, revision: str | None = None, weights: bool = True) -> str:
  """The local directory a model name stands for: 'world' (shipped), 'tiny[:DIR]' (made on first
  use), a directory, or a hub snapshot (weights=False: of the configs, tokenizer and scheduler)."""
  if pretrained == WORLD:
    return world_model_dir()
  if is_tiny_name(pretrained):
    return resolve_tiny(pretrained)
  return resolve_pretrained(pretrained, revision, weights)


def load_model(pretrained: str, revision: str | None = None, dtype=None) -> StableDiffusion:
  """`load_stable_diffusion`, with 'tiny[:DIR]' standing for a tiny model made on first use.

  The model's `source` stays the name given, so identity files record 'tiny' or the hub id.
  """
  kwargs = {} if dtype is None else {"dtype": dtype}
  sd = load_stable_diffusion(resolve_model_dir(pretrained, revision), revision=revision, **kwargs)
  return dataclasses.replace(sd, source=pretrained)
