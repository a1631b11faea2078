"""The world pretraining's pure part: losses, the train state, one jitted sharded step.

Stage 'vae': the AutoencoderKL on images (L1 + MSE reconstruction, a small KL).
Stage 'unet': the UNet and the text encoder, trained jointly on the frozen VAE's latents, with
the Stable Diffusion loss on the model's own (SD1.5) noise schedule.
"""

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from hdb_jax import models
from hdb_jax.diffusion.loss import draw_noise, loss_for_noise, min_snr_weights
from hdb_jax.engine.optimizers import make_optimizer
from hdb_jax.runtime import mesh as mesh_lib

Params = Any
Batch = dict[str, jax.Array]  # image float32 [B, H, W, 3] in [-1, 1]; input_ids int32 [B, T]
LossFn = Callable[[Params, Params, Batch, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


@flax.struct.dataclass
class PretrainState:
  step: jax.Array
  params: Params  # what the stage trains
  opt_state: Any
  ema: Params  # exponential moving average of params (what is shipped)


def random_crops(images: jax.Array, size: int, key: jax.Array) -> jax.Array:
  """A random size x size crop of each image [B, H, W, C] (size >= H: the images)."""
  if size >= images.shape[1]:
    return images
  corners = jax.random.randint(key, (images.shape[0], 2), 0, images.shape[1] - size + 1)
  crop = lambda image, yx: jax.lax.dynamic_slice(image, (yx[0], yx[1], 0), (size, size, 3))
  return jax.vmap(crop)(images, corners)


def vae_loss(sd: models.StableDiffusion, kl_weight: float, crop: int) -> LossFn:
  """loss(params, frozen (unused), batch, key) for the VAE on random crop x crop patches (the VAE
  is convolutional; a 32 px patch costs a quarter of a 64 px image): mean |x - x̂| + mean
  (x - x̂)^2 + kl_weight * KL per latent number, x̂ decoded from a posterior sample.

  XLA's own convolutions: the matmul backward (hdb_jax.models.matmul_conv) was 15% slower here."""

  def loss(params, frozen, batch, key):
    del frozen
    crop_key, key = jax.random.split(key)
    images = random_crops(batch["image"], crop, crop_key)
    mean, logvar = models.vae_posterior(sd, params, images)
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
    recon = models.vae_decode(sd, params, z * sd.vae_scaling_factor)
    error = recon.astype(jnp.float32) - images
    l1, mse = jnp.mean(jnp.abs(error)), jnp.mean(jnp.square(error))
    kl = 0.5 * jnp.mean(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
    return l1 + mse + kl_weight * kl, {"l1": l1, "mse": mse, "kl": kl}

  return loss


def unet_loss(sd: models.StableDiffusion, min_snr_gamma: float = 0.0) -> LossFn:
  """loss(params {'unet', 'text_encoder'}, frozen VAE params, batch, key): the diffusion MSE on
  a posterior sample of the frozen VAE's scaled latents, for noise and timesteps drawn from key;
  min_snr_gamma > 0 weights each example by diffusion.loss.min_snr_weights (0: unweighted)."""

  def loss(params, vae_params, batch, key):
    latent_key, noise_key = jax.random.split(key)
    mean, logvar = models.vae_posterior(sd, vae_params, batch["image"])
    latents = mean + jnp.exp(0.5 * logvar) * jax.random.normal(latent_key, mean.shape)
    latents = jax.lax.stop_gradient(latents * sd.vae_scaling_factor)
    keys = jax.random.split(noise_key, latents.shape[0])
    noise, timesteps = draw_noise(sd, keys, latents.shape[1:])
    per_example = loss_for_noise(sd, params, None, latents, batch["input_ids"], noise, timesteps)
    if min_snr_gamma > 0:
      weighted = per_example * min_snr_weights(sd, timesteps, min_snr_gamma)
      return jnp.mean(weighted), {"mse": jnp.mean(per_example)}
    return jnp.mean(per_example), {}

  return loss


def init_state(params: Params, optimizer: optax.GradientTransformation) -> PretrainState:
  return PretrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=optimizer.init(params),
    ema=jax.tree.map(jnp.copy, params),
  )


def train_step(
  loss_fn: LossFn, optimizer: optax.GradientTransformation, ema_decay: float, seed: int
) -> Callable[[PretrainState, Params, Batch], tuple[PretrainState, dict[str, jax.Array]]]:
  """step(state, frozen, batch) -> (state, metrics {loss, grad_norm, ...}). The step's randomness
  is fold_in(key(seed), step): a resumed run draws what an uninterrupted one does."""

  def step(state, frozen, batch):
    key = jax.random.fold_in(jax.random.key(seed), state.step)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, frozen, batch, key)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # the usual EMA warm-up: the average starts short and lengthens to 1 / (1 - ema_decay) steps
    decay = jnp.minimum(ema_decay, (1.0 + state.step) / (10.0 + state.step))
    ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, state.ema, params)
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), **aux}
    new = PretrainState(step=state.step + 1, params=params, opt_state=opt_state, ema=ema)
    return new, metrics

  return step


def jit_train_step(
  loss_fn: LossFn, stage: ml_collections.ConfigDict, seed: int, mesh: Any, state_sharding: Any
) -> Callable[[PretrainState, Params, Batch], tuple[PretrainState, dict[str, jax.Array]]]:
  """The stage's step under jit: state and frozen params replicated, the batch split on the mesh's
  batch axes, the old state donated."""
  optimizer = make_optimizer(stage.optim, stage.steps)
  step = train_step(loss_fn, optimizer, stage.ema_decay, seed)
  replicated = mesh_lib.replicated(mesh)
  return jax.jit(
    step,
    in_shardings=(state_sharding, replicated, mesh_lib.batch_sharding(mesh)),
    out_shardings=(state_sharding, replicated),
    donate_argnums=(0,),
  )
