"""Load a base model by the name a config gives: a hub id, a local diffusers directory, or
'tiny[:DIR]'.

sd = load_model("stable-diffusion-v1-5/stable-diffusion-v1-5")   # or a directory, or "tiny"
"""

import dataclasses

from hdb_jax.models.loading import StableDiffusion, load_stable_diffusion, resolve_pretrained
from hdb_jax.models.tiny import TINY_PREFIX, resolve_tiny


def resolve_model_dir(pretrained: str, revision: str | None = None) -> str:
  """The local directory a model name stands for: 'tiny[:DIR]' (made on first use), a directory,
  or a hub snapshot."""
  if pretrained == TINY_PREFIX or pretrained.startswith(TINY_PREFIX + ":"):
    return resolve_tiny(pretrained)
  return resolve_pretrained(pretrained, revision)


def load_model(pretrained: str, revision: str | None = None, dtype=None) -> StableDiffusion:
  """`load_stable_diffusion`, with 'tiny[:DIR]' standing for a tiny model made on first use.

  The model's `source` stays the name given, so identity files record 'tiny' or the hub id.
  """
  kwargs = {} if dtype is None else {"dtype": dtype}
  sd = load_stable_diffusion(resolve_model_dir(pretrained, revision), revision=revision, **kwargs)
  return dataclasses.replace(sd, source=pretrained)
