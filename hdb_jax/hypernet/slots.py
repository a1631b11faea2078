"""Packed LiDB vectors [..., D] <-> one padded slot per adapted layer [..., L, P].

The hypernetwork has one token per adapted layer and predicts that layer's (A_train, B_train)
numbers into a slot of P = max per-layer size entries; tiny or odd layers use fewer (the rest is
padding, masked to zero). Layer order is the packer's (sorted paths), so slot l is the l-th segment
of the packed vector that Phase 0 stores.
"""

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hdb_jax.adapters import LayerSpec, LidbConfig, Packer, lidb_packer


@dataclasses.dataclass(frozen=True)
class SlotLayout:
  """Per-layer segment sizes of the packed vector, in packed order."""

  paths: tuple[str, ...]
  sizes: tuple[int, ...]

  @property
  def num_layers(self) -> int:
    return len(self.sizes)

  @property
  def slot_size(self) -> int:
    return max(self.sizes)

  @property
  def total(self) -> int:
    return sum(self.sizes)

  def mask(self) -> np.ndarray:
    """[L, P] float32: 1 where a slot entry is a real LiDB number, 0 for padding."""
    return (np.arange(self.slot_size)[None, :] < np.asarray(self.sizes)[:, None]).astype(np.float32)

  def _flat_positions(self) -> np.ndarray:
    """For each packed entry, its index in the flattened [L * P] slots."""
    return np.concatenate([l * self.slot_size + np.arange(s) for l, s in enumerate(self.sizes)])

  def to_packed(self, slots: jax.Array) -> jax.Array:
    """[..., L, P] -> [..., D]."""
    flat = slots.reshape(slots.shape[:-2] + (self.num_layers * self.slot_size,))
    return jnp.take(flat, jnp.asarray(self._flat_positions()), axis=-1)

  def to_slots(self, packed: jax.Array) -> jax.Array:
    """[..., D] -> [..., L, P] with zero padding."""
    if packed.shape[-1] != self.total:
      raise ValueError(
        f"packed vector has {packed.shape[-1]} numbers, the layout holds {self.total}"
      )
    flat = jnp.zeros(packed.shape[:-1] + (self.num_layers * self.slot_size,), packed.dtype)
    flat = flat.at[..., jnp.asarray(self._flat_positions())].set(packed)
    return flat.reshape(packed.shape[:-1] + (self.num_layers, self.slot_size))


def layout_from_packer(packer: Packer, paths: Sequence[str]) -> SlotLayout:
  """Pairs the packer's leaves (a_train, b_train per layer, in order) into one segment per layer."""
  sizes = [math.prod(s) for s in packer.shapes]
  if len(sizes) != 2 * len(paths):
    raise ValueError(
      f"packer has {len(sizes)} leaves, expected 2 per layer for {len(paths)} layers"
    )
  return SlotLayout(
    paths=tuple(paths), sizes=tuple(sizes[2 * i] + sizes[2 * i + 1] for i in range(len(paths)))
  )


def slot_layout(layers: Sequence[LayerSpec], config: LidbConfig) -> SlotLayout:
  """The layout of lidb_packer(layers, config)'s vectors."""
  return layout_from_packer(lidb_packer(layers, config), sorted(layer.path for layer in layers))
