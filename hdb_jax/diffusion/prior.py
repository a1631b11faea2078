"""DreamBooth's prior preservation: keep the class ("a face") as the base model draws it.

Each training example also sees a class image with the class prompt, through its own adapters, and
its loss becomes instance loss + weight * class loss. Class images are drawn once by the frozen base
model from the class prompt (`source='generate'`, as in DreamBooth) or read from a data source
('synthetic', 'folder:<path>', 'tfds:<name>'); they are VAE-encoded once.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hdb_jax import data, models
from hdb_jax.diffusion.base import BaseModel, encode_latents
from hdb_jax.diffusion.sampling import SamplingConfig, make_sampler
from hdb_jax.errors import ConfigError


@dataclasses.dataclass
class ClassPrior:
  """Class latents [C, h, w, 4], the class prompt's ids [1, T] and the term's weight []."""

  latents: jax.Array
  input_ids: jax.Array
  weight: jax.Array

  def pick(self, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One class image per example from its own key (independent of the batch): (latents [B, ...],
    ids [B, T])."""
    index = jax.vmap(
      lambda k: jax.random.randint(jax.random.fold_in(k, 1), (), 0, self.latents.shape[0])
    )(keys)
    return self.latents[index], jnp.repeat(self.input_ids, keys.shape[0], axis=0)


jax.tree_util.register_dataclass(
  ClassPrior, data_fields=["latents", "input_ids", "weight"], meta_fields=[]
)


def class_images(base: BaseModel, config: ml_collections.ConfigDict) -> np.ndarray:
  """config.prior's class images [C, H, W, 3] in [-1, 1]."""
  prior = config.prior
  if prior.source == "generate":
    sampler = make_sampler(
      base.sd,
      SamplingConfig(steps=prior.sample_steps, guidance=prior.guidance, seed=config.seed + 2),
    )
    count = prior.num_images
    cond = jnp.asarray(np.repeat(models.tokenize(base.sd, [prior.class_prompt]), count, axis=0))
    uncond = jnp.asarray(np.repeat(models.tokenize(base.sd, [""], allow_empty=True), count, axis=0))
    images = sampler(base.sd.params, None, cond, uncond, jnp.arange(count, dtype=jnp.int32))
    return np.asarray(images) * 2.0 - 1.0
  source_config = config.data.copy_and_resolve_references()
  source_config.source = prior.source
  with data.make_iterator(
    source_config,
    prior.num_images,
    base.sd.resolution,
    process_index=0,
    process_count=1,
    seed=config.seed,
  ) as batches:
    return next(batches)["image"]


def make_class_prior(base: BaseModel, config: ml_collections.ConfigDict) -> ClassPrior | None:
  """The prior term of config.prior, or None when its weight is 0."""
  prior = config.prior
  if not prior.weight:
    return None
  if prior.weight < 0 or prior.num_images < 1:
    raise ConfigError(
      f"prior.weight must be >= 0 and prior.num_images >= 1 (got {prior.weight}, "
      f"{prior.num_images})"
    )
  latents = encode_latents(base, class_images(base, config))
  return ClassPrior(
    latents=latents,
    input_ids=jnp.asarray(models.tokenize(base.sd, [prior.class_prompt])),
    weight=jnp.asarray(prior.weight, jnp.float32),
  )
