"""Pure apply functions over the Stable Diffusion modules: everything else sees arrays and pytrees.

Layouts: images NHWC in [-1, 1]; latents NHWC (the Flax UNet and VAE take NCHW, converted here).
"""

import contextlib
import itertools
from typing import Any, Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from diffusers.models.attention_flax import FlaxGEGLU, FlaxTransformer2DModel

from hdb_jax.errors import UserError
from hdb_jax.models.attention import attention_kernel
from hdb_jax.models.loading import Params, StableDiffusion
from hdb_jax.models.matmul_conv import matmul_conv_backward, matmul_conv_wanted
from hdb_jax.models.tokenizer import pad_to_length

TRANSFORMER_NORM_EPSILON = 1e-6  # PyTorch Transformer2DModel's GroupNorm eps (Flax hard-codes 1e-5)
# Rare identifiers people use for [V]; check_token suggests those that are one token of the
# tokenizer at hand.
RARE_IDENTIFIERS = ("sks", "ohwx", "zwx", "xyz", "qwe", "vsx", "btx")


def _group_norm(module: nn.GroupNorm, x: jax.Array, epsilon: float) -> jax.Array:
  """GroupNorm over NHWC with the module's own scale/bias and a given epsilon."""
  groups = module.num_groups
  grouped = x.reshape(x.shape[:-1] + (groups, x.shape[-1] // groups)).astype(jnp.float32)
  axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
  mean = grouped.mean(axis=axes, keepdims=True)
  var = grouped.var(axis=axes, keepdims=True)
  normed = ((grouped - mean) * jax.lax.rsqrt(var + epsilon)).reshape(x.shape)
  params = module.variables["params"]
  return (normed * params["scale"] + params["bias"]).astype(x.dtype)


@contextlib.contextmanager
def pytorch_parity() -> Iterator[None]:
  """Makes diffusers' Flax UNet compute what the PyTorch UNet (the weights' origin) computes.

  Two differences in diffusers 0.39's Flax code: GEGLU uses flax's tanh-approximate `nn.gelu`
  (PyTorch: exact erf GELU), and the transformer blocks' GroupNorm uses eps 1e-5 (PyTorch: 1e-6),
  which matters at small spatial sizes. Without this the two differ by ~1% on the tiny model.
  """

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    if isinstance(module, FlaxGEGLU):
      hidden_linear, hidden_gate = jnp.split(module.proj(args[0]), 2, axis=-1)
      deterministic = kwargs.get("deterministic", args[1] if len(args) > 1 else True)
      return module.dropout_layer(
        hidden_linear * jax.nn.gelu(hidden_gate, approximate=False), deterministic=deterministic
      )
    if isinstance(module, nn.GroupNorm) and isinstance(module.parent, FlaxTransformer2DModel):
      return _group_norm(module, args[0], TRANSFORMER_NORM_EPSILON)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    yield


def tokenize(sd: StableDiffusion, prompts: Sequence[str], allow_empty: bool = False) -> np.ndarray:
  """prompts -> int32 [batch, max_length] token ids, padded/truncated to the tokenizer's length.

  An empty prompt is an error unless allow_empty (the unconditional prompt of guidance)."""
  if isinstance(prompts, str):
    prompts = [prompts]
  for prompt in prompts:
    if not allow_empty and (not prompt or not prompt.strip()):
      raise UserError("empty prompt")
  return pad_to_length(sd.tokenizer, prompts).input_ids.astype(np.int32)


def _is_single_token(tokenizer: Any, word: str) -> bool:
  pieces = tokenizer.tokenize(word)
  return len(pieces) == 1 and tokenizer.convert_tokens_to_ids(pieces[0]) != tokenizer.unk_token_id


def suggested_tokens(tokenizer: Any, exclude: str = "", limit: int = 3) -> list[str]:
  """Up to `limit` words that are one token of `tokenizer`: the RARE_IDENTIFIERS that are, or if
  none is, whole-word vocab entries of 3-5 lowercase letters, latest merges (the rarest) first."""
  words = [w for w in RARE_IDENTIFIERS if w != exclude and _is_single_token(tokenizer, w)]
  if not words:
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: -item[1])
    entries = (t.removesuffix("</w>") for t, _ in by_id if t.endswith("</w>"))
    words = list(
      itertools.islice(
        (
          w
          for w in entries
          if 3 <= len(w) <= 5
          and w.isascii()
          and w.isalpha()
          and w.islower()
          and w != exclude
          and _is_single_token(tokenizer, w)
        ),
        limit,
      )
    )
  return words[:limit]


def check_token(sd: StableDiffusion, token: str) -> None:
  """The identifier token [V] must be one word that the tokenizer keeps as a single token (else
  UserError naming words that are)."""

  def examples() -> str:
    words = suggested_tokens(sd.tokenizer, exclude=token)
    return f", e.g. {', '.join(repr(w) for w in words)}" if words else ""

  if not token or not token.strip() or len(token.split()) != 1:
    raise UserError(
      f"identifier token {token!r} must be one non-empty word that is a single token of this "
      f"tokenizer{examples()}"
    )
  if not _is_single_token(sd.tokenizer, token):
    raise UserError(
      f"identifier token {token!r} is not a single token of this tokenizer (it becomes "
      f"{sd.tokenizer.tokenize(token)}); choose a rare word that is one{examples()}"
    )


def encode_text(sd: StableDiffusion, text_params: Params, input_ids: jax.Array) -> jax.Array:
  """input_ids: [batch, tokens] -> last hidden states [batch, tokens, width]."""
  batch, length = input_ids.shape
  position_ids = jnp.broadcast_to(jnp.arange(length)[None], (batch, length))
  outputs = sd.text_encoder.module.apply(
    {"params": text_params}, input_ids, jnp.ones_like(input_ids), position_ids, deterministic=True
  )
  return outputs[0]


def unet_apply(
  sd: StableDiffusion,
  unet_params: Params,
  latents: jax.Array,
  timesteps: jax.Array,
  text_embeddings: jax.Array,
) -> jax.Array:
  """latents: [batch, h, w, 4], timesteps: [batch], text_embeddings: [batch, tokens, width]
  -> the UNet's prediction [batch, h, w, 4] (noise or v, per the scheduler)."""
  sample = jnp.transpose(latents, (0, 3, 1, 2))
  # XLA:CPU's convolution input-gradient is several times slower than matrix products (see
  # matmul_conv); GPU/TPU convolutions are fast as they are.
  conv_backward = matmul_conv_backward() if matmul_conv_wanted() else contextlib.nullcontext()
  with pytorch_parity(), conv_backward, attention_kernel(sd.attention):
    out = sd.unet.apply(
      {"params": unet_params}, sample, jnp.asarray(timesteps), text_embeddings
    ).sample
  return jnp.transpose(out, (0, 2, 3, 1))


def vae_posterior(
  sd: StableDiffusion, vae_params: Params, images: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """images: [batch, H, W, 3] in [-1, 1] -> the VAE posterior's (mean, log variance), unscaled,
  each [batch, h, w, latent channels] (for training the VAE)."""
  sample = jnp.transpose(images, (0, 3, 1, 2))
  posterior = sd.vae.apply({"params": vae_params}, sample, method=sd.vae.encode).latent_dist
  return posterior.mean, posterior.logvar


def center_vae_latents(vae_params: Params, mean: np.ndarray, std: np.ndarray) -> Params:
  """The VAE's params with a per-channel normalization of its latents folded into its 1x1
  quant_conv (encoder side) and post_quant_conv (decoder side): posterior means (mean [C],
  std [C] their per-channel statistics, unscaled) come out as (z - mean) / std, log variances
  shifted by -2 log std, and the decoder reads them back as before, so images -> images is
  unchanged. A diffusers VAE with these weights needs no shift_factor (which SD1.5's
  StableDiffusionPipeline would not read): the latents the UNet sees are centred and of unit
  variance per channel, so the sampler's pure-noise start lacks no channel mean (SD1.5's schedule
  keeps sqrt(alphabar_T) = 0.068 of the signal at t = T, so a model trained on uncentred latents
  expects that mean in its start)."""
  mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
  quant, post = vae_params["quant_conv"], vae_params["post_quant_conv"]
  channels = post["kernel"].shape[2]  # HWIO
  if mean.shape != (channels,) or std.shape != (channels,) or not np.all(std > 0):
    raise ValueError(
      f"center_vae_latents: mean and std must be [{channels}] with std > 0; got "
      f"{mean.shape} and {std.shape}"
    )
  out_scale = np.concatenate([1.0 / std, np.ones(channels)])  # the means' outputs, not logvars'
  out_shift = np.concatenate([-mean / std, -2.0 * np.log(std)])
  quant_kernel = np.asarray(quant["kernel"], np.float64) * out_scale
  quant_bias = np.asarray(quant["bias"], np.float64) * out_scale + out_shift
  post_kernel = np.asarray(post["kernel"], np.float64)
  post_bias = np.asarray(post["bias"], np.float64) + np.einsum("i,io->o", mean, post_kernel[0, 0])
  post_kernel = post_kernel * std[:, None]  # input channel i reads std_i z'_i (+ mean_i: the bias)
  dtype = np.asarray(quant["kernel"]).dtype
  return {
    **vae_params,
    "quant_conv": {"kernel": quant_kernel.astype(dtype), "bias": quant_bias.astype(dtype)},
    "post_quant_conv": {"kernel": post_kernel.astype(dtype), "bias": post_bias.astype(dtype)},
  }


def vae_encode(
  sd: StableDiffusion, vae_params: Params, images: jax.Array, rng: jax.Array | None = None
) -> jax.Array:
  """images: [batch, H, W, 3] in [-1, 1] -> scaled latents [batch, H/f, W/f, 4] (f: the VAE's
  factor, 8 for SD1.5).

  With `rng`, a sample of the VAE posterior; without, its mean (deterministic, for cached latents).
  """
  sample = jnp.transpose(images, (0, 3, 1, 2))
  posterior = sd.vae.apply({"params": vae_params}, sample, method=sd.vae.encode).latent_dist
  # NHWC: Flax's posterior is channels-last
  latents = posterior.mean if rng is None else posterior.sample(rng)
  return latents * sd.vae_scaling_factor


def vae_decode(sd: StableDiffusion, vae_params: Params, latents: jax.Array) -> jax.Array:
  """scaled latents [batch, h, w, 4] -> images [batch, f h, f w, 3] in [-1, 1] (not clipped)."""
  latents = jnp.transpose(latents / sd.vae_scaling_factor, (0, 3, 1, 2))
  images = sd.vae.apply({"params": vae_params}, latents, method=sd.vae.decode).sample
  return jnp.transpose(images, (0, 2, 3, 1))
