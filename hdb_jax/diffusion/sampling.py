"""Text-to-image sampling with classifier-free guidance, many identities in one batch.

Each image's starting noise comes from (seed, its noise id: its index within its identity's
images, plus generation's noise_offset), so an identity's images do not depend on what else is in
the batch, and the same seed gives the same images.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hdb_jax import adapters, models
from hdb_jax.adapters import Factors
from hdb_jax.diffusion.loss import conditioned_prediction
from hdb_jax.errors import UserError
from hdb_jax.models.schedulers import sampling_scheduler


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  steps: int = 25
  guidance: float = 7.5
  sampler: str = "ddim"  # 'ddim' | 'dpm'
  seed: int = 0


def make_sampler(sd: models.StableDiffusion, config: SamplingConfig):
  """Returns jitted sample(params, factors|None, cond_ids [B,T], uncond_ids [B,T], noise_ids [B],
  latents=None) -> images float32 [B, H, W, 3] in [0, 1].

  factors: per-example adapters (batch axis B) or None. latents: the initial noise in diffusers'
  layout, float32 [B, C, h, w] (as a diffusers pipeline's `latents=`), or None for noise seeded by
  (config.seed, noise_ids). The sampler is diffusers' DDIM / DPM-Solver++ `from_config` of the
  model's scheduler config, with classifier-free guidance as in StableDiffusionPipeline.
  """
  sampler = sampling_scheduler(sd.scheduler_config, config.sampler)
  size = sd.unet.config.sample_size
  channels = sd.unet.config.in_channels

  def sample(params, factors, cond_ids, uncond_ids, noise_ids, latents=None):
    batch = cond_ids.shape[0]
    if latents is None:
      keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.key(config.seed), noise_ids)
      latents = jax.vmap(lambda k: jax.random.normal(k, (size, size, channels)))(keys)
    else:
      latents = jnp.transpose(jnp.asarray(latents, jnp.float32), (0, 2, 3, 1))
    state = sampler.set_timesteps(sampler.base_state, config.steps, latents.shape)
    latents = latents * state.init_noise_sigma
    ids = jnp.concatenate([uncond_ids, cond_ids])
    both = None if factors is None else adapters.tile_factors(factors, 2)

    def body(i, carry):
      latents, state = carry
      t = state.timesteps[i]
      model_in = sampler.scale_model_input(state, jnp.concatenate([latents, latents]), t)
      pred = conditioned_prediction(sd, params, both, model_in, jnp.full((2 * batch,), t), ids)
      uncond, cond = jnp.split(pred, 2)
      guided = uncond + config.guidance * (cond - uncond)
      out = sampler.step(state, guided, t, latents)
      return out.prev_sample, out.state

    latents, _ = jax.lax.fori_loop(0, config.steps, body, (latents, state))
    images = models.vae_decode(sd, params["vae"], latents)
    return jnp.clip((images + 1) / 2, 0, 1)

  return jax.jit(sample)


def check_latents(sd: models.StableDiffusion, latents: Any, num_images: int) -> np.ndarray:
  """Initial latents given by a user: float32 [num_images, C, h, w] in diffusers' layout, finite."""
  latents = np.asarray(latents)
  want = (
    num_images,
    sd.unet.config.in_channels,
    sd.unet.config.sample_size,
    sd.unet.config.sample_size,
  )
  if latents.shape != want:
    raise UserError(
      f"latents have shape {latents.shape}; this model and num_images={num_images} need "
      f"{want} ([num_images, channels, height, width], diffusers' layout)"
    )
  if not np.issubdtype(latents.dtype, np.floating) or not np.all(np.isfinite(latents)):
    raise UserError("latents must be finite floating-point numbers")
  return latents.astype(np.float32)


def stack_identity_factors(factor_list: list[Factors]) -> Factors:
  """Per-identity factors (no batch axis) -> batch of them. Ranks may differ (LiDB-only vs LiDB +
  LoRA): lower ranks are zero-padded, which adds exactly nothing."""
  rank = max(int(f[p][0].shape[-1]) for f in factor_list for p in f)

  def pad(a, b):
    extra = rank - a.shape[-1]
    return (
      jnp.pad(jnp.asarray(a), ((0, 0), (0, extra))),
      jnp.pad(jnp.asarray(b), ((0, extra), (0, 0))),
    )

  padded = [{p: pad(*f[p]) for p in f} for f in factor_list]
  return {
    p: (jnp.stack([f[p][0] for f in padded]), jnp.stack([f[p][1] for f in padded]))
    for p in padded[0]
  }
