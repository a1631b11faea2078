"""Plain LoRA factors (any rank), their composition, and counting.

A LoRA layer is a pair (A [n, r], B [r, m]) with delta W = A B. Factors of several adapters on the
same layer compose exactly by concatenation: [A | A'] [B ; B'] = A B + A' B'.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from hdb_jax.adapters.packing import Packer
from hdb_jax.adapters.targets import LayerSpec

Factors = dict[str, tuple[jax.Array, jax.Array]]  # path -> (A [..., n, r], B [..., r, m])
LoraParams = dict[str, dict[str, jax.Array]]  # path -> {'a': [n, r], 'b': [r, m]}


def init_lora(
  layers: Sequence[LayerSpec], rank: int, rng: jax.Array, a_init_std: float = 1.0
) -> LoraParams:
  """LoRA with A ~ N(0, a_init_std^2 / n) and B = 0: delta W starts at exactly zero.

  Used on top of a merged prediction (the rank-relaxed finetune), where B receives gradient
  through the non-zero A from the first step.
  """
  params = {}
  for layer, key in zip(layers, jax.random.split(rng, len(layers))):
    params[layer.path] = {
      "a": a_init_std / jnp.sqrt(layer.n) * jax.random.normal(key, (layer.n, rank)),
      "b": jnp.zeros((rank, layer.m)),
    }
  return params


def lora_factors(lora_params: LoraParams) -> Factors:
  return {path: (p["a"], p["b"]) for path, p in lora_params.items()}


def concat_factors(*factor_sets: Factors) -> Factors:
  """Composes adapters on the same layers into one of summed rank (exact)."""
  paths = set(factor_sets[0])
  for factors in factor_sets[1:]:
    if set(factors) != paths:
      raise ValueError("adapters to compose must cover the same layers")
  return {
    path: (
      jnp.concatenate([f[path][0] for f in factor_sets], axis=-1),
      jnp.concatenate([f[path][1] for f in factor_sets], axis=-2),
    )
    for path in sorted(paths)
  }


def delta_weights(factors: Factors) -> dict[str, jax.Array]:
  """path -> delta W = A B [..., n, m] (leading batch axes carried)."""
  return {path: jnp.matmul(a, b) for path, (a, b) in factors.items()}


def lora_size(layers: Sequence[LayerSpec], rank: int) -> int:
  return sum(rank * (layer.n + layer.m) for layer in layers)


def lora_packer(layers: Sequence[LayerSpec], rank: int) -> Packer:
  """Packs LoRA params of these layers and rank into one vector [..., D]."""
  return Packer.from_template(jax.eval_shape(lambda: init_lora(layers, rank, jax.random.key(0))))
