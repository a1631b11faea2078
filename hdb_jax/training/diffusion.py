"""The DreamBooth diffusion loss, per example, with adapters applied in batched mode."""

from typing import Any

import jax
import jax.numpy as jnp

from hdb_jax import adapters, models
from hdb_jax.adapters import Factors


def noisy_inputs(sd: models.StableDiffusion, latents: jax.Array, keys: jax.Array
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-example noise and timestep from per-example keys.

  latents: [B, h, w, 4], keys: [B] PRNG keys -> (noisy latents, timesteps [B], target) where the
  target is the noise (epsilon prediction) or the velocity (v prediction), per the scheduler config.
  """
  num_steps = sd.scheduler.config.num_train_timesteps

  def draw(key, shape):
    noise_key, t_key = jax.random.split(key)
    return jax.random.normal(noise_key, shape), jax.random.randint(t_key, (), 0, num_steps)

  noise, timesteps = jax.vmap(lambda k: draw(k, latents.shape[1:]))(keys)
  noisy = sd.scheduler.add_noise(sd.scheduler_state, latents, noise, timesteps)
  prediction_type = sd.scheduler.config.prediction_type
  if prediction_type == "epsilon":
    target = noise
  elif prediction_type == "v_prediction":
    target = sd.scheduler.get_velocity(sd.scheduler_state, latents, noise, timesteps)
  else:
    raise ValueError(f"unsupported prediction_type {prediction_type!r}")
  return noisy, timesteps, target


def conditioned_prediction(sd: models.StableDiffusion, params: dict[str, Any], factors: Factors | None,
                           noisy: jax.Array, timesteps: jax.Array, input_ids: jax.Array) -> jax.Array:
  """The UNet's prediction with per-example adapters on both text encoder and UNet.

  factors: layer path -> (A [B, n, R], B [B, R, m]) or None for the base model.
  """
  factors = factors or {}
  with adapters.batched_adapters(adapters.model_factors(factors, "text_encoder")):
    text = models.encode_text(sd, params["text_encoder"], input_ids)
  with adapters.batched_adapters(adapters.model_factors(factors, "unet")):
    return models.unet_apply(sd, params["unet"], noisy, timesteps, text)


def per_example_loss(sd: models.StableDiffusion, params: dict[str, Any], factors: Factors | None,
                     latents: jax.Array, input_ids: jax.Array, keys: jax.Array) -> jax.Array:
  """Diffusion MSE per example: [B] (mean over latent pixels and channels, in float32)."""
  noisy, timesteps, target = noisy_inputs(sd, latents, keys)
  pred = conditioned_prediction(sd, params, factors, noisy, timesteps, input_ids)
  return jnp.mean(jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)), axis=(1, 2, 3))
