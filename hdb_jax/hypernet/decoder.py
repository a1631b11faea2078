"""The hypernetwork's decoder (paper §4.2): image tokens + one token per adapted layer -> LiDB
weights.

A transformer decoder reads [image tokens ; weight tokens]. Weight token l is a learned per-layer
position embedding plus an embedding of layer l's current weights θ_{k-1} (zero at the start), and
per-layer linear heads turn the refined token into an update: θ_k = θ_{k-1} + Δ_k, for k = 1..s
with the same decoder weights (iterative refinement; s = 1 is the paper's k=1 ablation). Per-layer
heads and embeddings are single einsums over stacked [L, ...] kernels, not L separate modules.

The prediction is `theta_init + θ_s`. `theta_init` is a learned offset set at initialisation to the
mean Phase 0 weights (or a LiDB init), so the first prediction is a usable LiDB with both factors
non-zero: the diffusion loss has a gradient from step 0 (the zero-product trap).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class DecoderBlock(nn.Module):
  """Pre-LayerNorm transformer block: self-attention over all tokens, then an MLP."""

  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = nn.LayerNorm(dtype=self.dtype)(x)
    x = x + nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dtype=self.dtype)(y, y)
    y = nn.LayerNorm(dtype=self.dtype)(x)
    y = nn.Dense(self.mlp_dim, dtype=self.dtype)(y)
    return x + nn.Dense(x.shape[-1], dtype=self.dtype)(nn.gelu(y))


class WeightDecoder(nn.Module):
  """image tokens [B, T, H] -> LiDB slots [B, L, P] (see hypernet.slots for the layout).

  slot_sizes: real entries of each layer's slot (the rest is padding, kept at zero).
  """

  slot_sizes: tuple[int, ...]
  d_model: int = 256
  num_heads: int = 4
  depth: int = 2
  mlp_dim: int = 1024
  refine_steps: int = 1
  head_init_std: float = 1e-3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image_tokens: jax.Array, refine_steps: int | None = None) -> jax.Array:
    steps = self.refine_steps if refine_steps is None else refine_steps
    if steps < 1:
      raise ValueError(f"refine_steps must be >= 1, got {steps}")
    num_layers, slot = len(self.slot_sizes), max(self.slot_sizes)
    mask = jnp.asarray(np.arange(slot)[None, :] < np.asarray(self.slot_sizes)[:, None], jnp.float32)
    normal = nn.initializers.normal
    position = self.param("layer_position", normal(0.02), (num_layers, self.d_model))
    weights_in = self.param(
      "weights_in", normal(1.0 / np.sqrt(slot)), (num_layers, slot, self.d_model)
    )
    head_kernel = self.param(
      "head_kernel", normal(self.head_init_std), (num_layers, self.d_model, slot)
    )
    head_bias = self.param("head_bias", nn.initializers.zeros, (num_layers, slot))
    theta_init = self.param("theta_init", nn.initializers.zeros, (num_layers, slot))

    image = nn.LayerNorm(dtype=self.dtype)(nn.Dense(self.d_model, dtype=self.dtype)(image_tokens))
    blocks = [
      DecoderBlock(self.num_heads, self.mlp_dim, self.dtype, name=f"block_{i}")
      for i in range(self.depth)
    ]
    out_norm = nn.LayerNorm(dtype=self.dtype, name="out_norm")
    theta = jnp.zeros((image_tokens.shape[0], num_layers, slot), jnp.float32)
    for _ in range(steps):
      tokens = position[None] + jnp.einsum("blp,lpd->bld", theta, weights_in)
      x = jnp.concatenate([image, tokens.astype(image.dtype)], axis=1)
      for block in blocks:
        x = block(x)
      y = out_norm(x[:, image_tokens.shape[1] :]).astype(jnp.float32)
      theta = theta + (jnp.einsum("bld,ldp->blp", y, head_kernel) + head_bias) * mask
    return theta_init[None] + theta
