"""Pure apply functions over the Stable Diffusion modules: everything else sees arrays and pytrees.

Layouts: images NHWC in [-1, 1]; latents NHWC (the Flax UNet and VAE take NCHW, converted here).
"""

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hdb_jax.models.loading import Params, StableDiffusion


def tokenize(sd: StableDiffusion, prompts: Sequence[str]) -> np.ndarray:
  """prompts -> int32 [batch, max_length] token ids, padded/truncated to the tokenizer's length."""
  if isinstance(prompts, str):
    prompts = [prompts]
  for prompt in prompts:
    if not prompt or not prompt.strip():
      raise ValueError("empty prompt")
  ids = sd.tokenizer(list(prompts), padding="max_length", truncation=True,
                     max_length=sd.tokenizer.model_max_length, return_tensors="np").input_ids
  return ids.astype(np.int32)


def encode_text(sd: StableDiffusion, text_params: Params, input_ids: jax.Array) -> jax.Array:
  """input_ids: [batch, tokens] -> last hidden states [batch, tokens, width]."""
  batch, length = input_ids.shape
  position_ids = jnp.broadcast_to(jnp.arange(length)[None], (batch, length))
  outputs = sd.text_encoder.module.apply({"params": text_params}, input_ids,
                                         jnp.ones_like(input_ids), position_ids, deterministic=True)
  return outputs[0]


def unet_apply(sd: StableDiffusion, unet_params: Params, latents: jax.Array, timesteps: jax.Array,
               text_embeddings: jax.Array) -> jax.Array:
  """latents: [batch, h, w, 4], timesteps: [batch], text_embeddings: [batch, tokens, width]
  -> the UNet's prediction [batch, h, w, 4] (noise or v, per the scheduler)."""
  sample = jnp.transpose(latents, (0, 3, 1, 2))
  out = sd.unet.apply({"params": unet_params}, sample, jnp.asarray(timesteps), text_embeddings).sample
  return jnp.transpose(out, (0, 2, 3, 1))


def vae_encode(sd: StableDiffusion, vae_params: Params, images: jax.Array, rng: jax.Array) -> jax.Array:
  """images: [batch, H, W, 3] in [-1, 1] -> scaled latents [batch, H/8, W/8, 4] (a posterior sample)."""
  sample = jnp.transpose(images, (0, 3, 1, 2))
  posterior = sd.vae.apply({"params": vae_params}, sample, method=sd.vae.encode).latent_dist
  latents = posterior.sample(rng)  # NHWC: the Flax VAE's latent distribution is channels-last.
  return latents * sd.vae_scaling_factor


def vae_decode(sd: StableDiffusion, vae_params: Params, latents: jax.Array) -> jax.Array:
  """scaled latents [batch, h, w, 4] -> images [batch, 8h, 8w, 3] in [-1, 1] (not clipped)."""
  latents = jnp.transpose(latents / sd.vae_scaling_factor, (0, 3, 1, 2))
  images = sd.vae.apply({"params": vae_params}, latents, method=sd.vae.decode).sample
  return jnp.transpose(images, (0, 2, 3, 1))
