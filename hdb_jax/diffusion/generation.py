"""Text-to-image generation with personalized weights: many identities and prompts in one batch.

    images = generate(sd, identities, ["a {token} face as a rock star"], num_images=4,
                      sampling=SamplingConfig())

`{token}` in a prompt becomes each identity's token ([V]). An identity is anything with a `token`
and `factors()` (per-layer LoRA factors): an identity file (hdb_jax.formats.identity) or one built
in memory.
"""

from typing import Protocol, Sequence

import jax.numpy as jnp
import numpy as np

from hdb_jax import models
from hdb_jax.adapters import Factors
from hdb_jax.diffusion.sampling import (
  SamplingConfig,
  check_latents,
  make_sampler,
  stack_identity_factors,
)
from hdb_jax.io.images import to_uint8


class AdaptedIdentity(Protocol):
  """What generation needs of an identity: its token and its per-layer factors {path: (A [n, r], B
  [r, m])}."""

  token: str

  def factors(self) -> Factors: ...


def generate(
  sd: models.StableDiffusion,
  identities: Sequence[AdaptedIdentity],
  prompts: Sequence[str],
  num_images: int,
  sampling: SamplingConfig,
  negative_prompt: str = "",
  sampler=None,
  latents: np.ndarray | None = None,
  noise_offset: int = 0,
) -> np.ndarray:
  """Images [len(identities), len(prompts), num_images, H, W, 3] uint8, sampled in one batch.

  Image k of every (identity, prompt) starts from the noise of (seed, noise_offset + k), or from
  latents[k] when `latents` (float32 [num_images, C, h, w], diffusers' layout, as a diffusers
  pipeline's `latents=`) is given (then noise_offset must be 0). An offset draws other noise
  without changing the batch: image k at offset n is image n + k at offset 0 (the evaluation
  draws each identity's own). Many calls can share one `sampler = make_sampler(sd, sampling)`
  (traced once per batch shape).
  """
  rows = [(ident, prompt) for ident in identities for prompt in prompts]
  images = generate_rows(
    sd, rows, num_images, sampling, negative_prompt, sampler, latents, noise_offset
  )
  return images.reshape((len(identities), len(prompts)) + images.shape[1:])


def generate_rows(
  sd: models.StableDiffusion,
  rows: Sequence[tuple[AdaptedIdentity, str]],
  num_images: int,
  sampling: SamplingConfig,
  negative_prompt: str = "",
  sampler=None,
  latents: np.ndarray | None = None,
  noise_offset: int = 0,
) -> np.ndarray:
  """Images [len(rows), num_images, H, W, 3] uint8 of (identity, prompt) rows, sampled in one batch
  (a batch of different people with prompts of their own); noise as in `generate`. Every identity
  in one call must have the same adapter ranks."""
  if latents is not None:
    if noise_offset:
      raise ValueError("noise_offset draws seeded noise; given latents, it must be 0")
    latents = check_latents(sd, latents, num_images)
  cond, factor_list, noise_ids = [], [], []
  factors_of = {}  # identities repeat over rows: fold their factors once
  for ident, prompt in rows:
    if id(ident) not in factors_of:
      factors_of[id(ident)] = ident.factors()
    ids = models.tokenize(sd, [prompt.replace("{token}", ident.token)])
    for k in range(num_images):
      cond.append(ids[0])
      factor_list.append(factors_of[id(ident)])
      noise_ids.append(noise_offset + k)
  uncond = np.repeat(models.tokenize(sd, [negative_prompt], allow_empty=True), len(cond), axis=0)
  factors = stack_identity_factors(factor_list) if factor_list[0] else None
  sample = sampler or make_sampler(sd, sampling)
  images = sample(
    sd.params,
    factors,
    jnp.asarray(np.stack(cond)),
    jnp.asarray(uncond),
    jnp.asarray(noise_ids, jnp.int32),
    None if latents is None else jnp.asarray(latents[noise_ids]),
  )
  images = to_uint8(images)
  return images.reshape((len(rows), num_images) + images.shape[1:])
