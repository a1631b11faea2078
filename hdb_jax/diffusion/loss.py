"""The DreamBooth diffusion loss, per example, with adapters applied in batched mode."""

from typing import Any

import jax
import jax.numpy as jnp

from hdb_jax import adapters, models
from hdb_jax.adapters import Factors


def draw_noise(
  sd: models.StableDiffusion, keys: jax.Array, shape: tuple[int, ...]
) -> tuple[jax.Array, jax.Array]:
  """Per-example noise [B, *shape] and timestep [B] (uniform over the training timesteps) from keys
  [B]."""
  num_steps = sd.scheduler.config.num_train_timesteps

  def draw(key):
    noise_key, t_key = jax.random.split(key)
    return jax.random.normal(noise_key, shape), jax.random.randint(t_key, (), 0, num_steps)

  return jax.vmap(draw)(keys)


def min_snr_weights(sd: models.StableDiffusion, timesteps: jax.Array, gamma: float) -> jax.Array:
  """Min-SNR-γ loss weights [B] (Hang et al. 2023) for timesteps [B]: min(SNR_t, γ) / SNR_t for
  'epsilon' prediction, min(SNR_t, γ) / (SNR_t + 1) for 'v_prediction', SNR_t = ᾱ_t / (1 - ᾱ_t).
  They down-weight the easy low-noise steps, which otherwise dominate the MSE's gradient."""
  alpha_bar = sd.scheduler_state.common.alphas_cumprod[timesteps].astype(jnp.float32)
  snr = alpha_bar / (1 - alpha_bar)
  if sd.scheduler.config.prediction_type == "v_prediction":
    return jnp.minimum(snr, gamma) / (snr + 1)
  return jnp.minimum(1.0, gamma / snr)  # = min(SNR, γ) / SNR, and 1 where SNR is 0


def noised_and_target(
  sd: models.StableDiffusion, latents: jax.Array, noise: jax.Array, timesteps: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """(noisy latents, regression target) for given noise and timesteps, on the model's own schedule:
  noisy = sqrt(ᾱ_t) x + sqrt(1 - ᾱ_t) ε (diffusers' add_noise), target ε for 'epsilon' prediction or
  v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x (diffusers' get_velocity) for 'v_prediction'."""
  noisy = sd.scheduler.add_noise(sd.scheduler_state, latents, noise, timesteps)
  prediction_type = sd.scheduler.config.prediction_type
  if prediction_type == "epsilon":
    return noisy, noise
  if prediction_type == "v_prediction":
    return noisy, sd.scheduler.get_velocity(sd.scheduler_state, latents, noise, timesteps)
  raise ValueError(f"unsupported prediction_type {prediction_type!r}")


def conditioned_prediction(
  sd: models.StableDiffusion,
  params: dict[str, Any],
  factors: Factors | None,
  noisy: jax.Array,
  timesteps: jax.Array,
  input_ids: jax.Array,
) -> jax.Array:
  """The UNet's prediction with per-example adapters on both text encoder and UNet.

  factors: layer path -> (A [B, n, R], B [B, R, m]) or None for the base model.
  """
  factors = factors or {}
  with adapters.batched_adapters(adapters.model_factors(factors, "text_encoder")):
    text = models.encode_text(sd, params["text_encoder"], input_ids)
  with adapters.batched_adapters(adapters.model_factors(factors, "unet")):
    return models.unet_apply(sd, params["unet"], noisy, timesteps, text)


def per_example_loss(
  sd: models.StableDiffusion,
  params: dict[str, Any],
  factors: Factors | None,
  latents: jax.Array,
  input_ids: jax.Array,
  keys: jax.Array,
) -> jax.Array:
  """Diffusion MSE per example: [B] (mean over latent pixels and channels, in float32)."""
  noise, timesteps = draw_noise(sd, keys, latents.shape[1:])
  return loss_for_noise(sd, params, factors, latents, input_ids, noise, timesteps)


def loss_for_noise(
  sd: models.StableDiffusion,
  params: dict[str, Any],
  factors: Factors | None,
  latents: jax.Array,
  input_ids: jax.Array,
  noise: jax.Array,
  timesteps: jax.Array,
) -> jax.Array:
  """The diffusion MSE per example [B] for given noise [B, h, w, 4] and timesteps [B]: what a
  diffusers training script computes as F.mse_loss(unet(add_noise(x, ε, t), t, text), target) per
  example."""
  noisy, target = noised_and_target(sd, latents, noise, timesteps)
  pred = conditioned_prediction(sd, params, factors, noisy, timesteps, input_ids)
  return jnp.mean(jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)), axis=(1, 2, 3))
