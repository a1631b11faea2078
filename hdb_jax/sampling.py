"""Text-to-image sampling with classifier-free guidance, many identities in one batch.

Each image's starting noise comes from (seed, its index within its identity's images), so an
identity's images do not depend on what else is in the batch, and the same seed gives the same images.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hdb_jax import adapters, models
from hdb_jax.adapters import Factors
from hdb_jax.models.schedulers import sampling_scheduler
from hdb_jax.training.diffusion import conditioned_prediction


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  steps: int = 25
  guidance: float = 7.5
  sampler: str = "ddim"  # 'ddim' | 'dpm'
  seed: int = 0


def make_sampler(sd: models.StableDiffusion, config: SamplingConfig):
  """Returns jitted sample(params, factors|None, cond_ids [B,T], uncond_ids [B,T], noise_ids [B]) -> images.

  factors: per-example adapters (batch axis B) or None. Output: float32 [B, H, W, 3] in [0, 1].
  """
  scheduler, base_state = sampling_scheduler(sd, config.sampler)
  size = sd.unet.config.sample_size
  channels = sd.unet.config.in_channels

  def sample(params, factors, cond_ids, uncond_ids, noise_ids):
    batch = cond_ids.shape[0]
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.PRNGKey(config.seed), noise_ids)
    latents = jax.vmap(lambda k: jax.random.normal(k, (size, size, channels)))(keys)
    state = scheduler.set_timesteps(base_state, config.steps, (batch, size, size, channels))
    latents = latents * state.init_noise_sigma
    ids = jnp.concatenate([uncond_ids, cond_ids])
    both = None if factors is None else adapters.tile_factors(factors, 2)

    def body(i, carry):
      latents, state = carry
      t = state.timesteps[i]
      model_in = scheduler.scale_model_input(state, jnp.concatenate([latents, latents]), t)
      pred = conditioned_prediction(sd, params, both, model_in, jnp.full((2 * batch,), t), ids)
      uncond, cond = jnp.split(pred, 2)
      guided = uncond + config.guidance * (cond - uncond)
      out = scheduler.step(state, guided, t, latents)
      return out.prev_sample, out.state

    latents, _ = jax.lax.fori_loop(0, config.steps, body, (latents, state))
    images = models.vae_decode(sd, params["vae"], latents)
    return jnp.clip((images + 1) / 2, 0, 1)

  return jax.jit(sample)


def stack_identity_factors(factor_list: list[Factors]) -> Factors:
  """Per-identity factors (no batch axis) -> batch of them. Ranks may differ (LiDB-only vs LiDB +
  LoRA): lower ranks are zero-padded, which adds exactly nothing."""
  rank = max(int(f[p][0].shape[-1]) for f in factor_list for p in f)
  def pad(a, b):
    extra = rank - a.shape[-1]
    return (jnp.pad(jnp.asarray(a), ((0, 0), (0, extra))), jnp.pad(jnp.asarray(b), ((0, extra), (0, 0))))
  padded = [{p: pad(*f[p]) for p in f} for f in factor_list]
  return {p: (jnp.stack([f[p][0] for f in padded]), jnp.stack([f[p][1] for f in padded])) for p in padded[0]}


def to_uint8(images: Any) -> np.ndarray:
  return np.asarray(np.round(np.asarray(images) * 255), np.uint8)


def image_grid(images: np.ndarray, columns: int) -> np.ndarray:
  """[N, H, W, 3] uint8 -> one [rows*H, columns*W, 3] grid (blank cells black)."""
  n, h, w, c = images.shape
  rows = -(-n // columns)
  grid = np.zeros((rows * h, columns * w, c), images.dtype)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = image
  return grid
