"""Adapter pytrees <-> one flat vector per example.

Training, the optimizer and the hypernetwork see one array [..., D] instead of hundreds of small
leaves: far fewer ops for XLA to compile (an Adam update over 272 LiDB leaves compiled ~6x slower
than over one vector, measured on the tiny model), and one vector per identity to store and predict.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Packer:
  """Packs pytrees shaped like `template` (leaf shapes without batch axes) into [..., D].

  Leaf order is jax.tree's (dict keys sorted), so for LiDB params of sorted layers this is
  the same order as `lidb_packer`.
  """

  treedef: Any
  shapes: tuple[tuple[int, ...], ...]

  @classmethod
  def from_template(cls, template: Any) -> "Packer":
    leaves, treedef = jax.tree.flatten(template)
    return cls(treedef=treedef, shapes=tuple(tuple(int(d) for d in leaf.shape) for leaf in leaves))

  @property
  def size(self) -> int:
    return sum(math.prod(s) for s in self.shapes)

  def pack(self, tree: Any) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    lead = leaves[0].shape[: leaves[0].ndim - len(self.shapes[0])]
    return jnp.concatenate([jnp.reshape(leaf, lead + (-1,)) for leaf in leaves], axis=-1)

  def unpack(self, vector: jax.Array) -> Any:
    if vector.shape[-1] != self.size:
      raise ValueError(f"vector has {vector.shape[-1]} numbers, the adapters need {self.size}")
    # One split, not one slice per leaf: the gradient of a split is a single concatenate, where
    # the gradient of separate slices is a sum of padded copies, O(leaves x D) work per step
    # (~40% of the tiny model's finetune step before this, measured with benchmarks/finetune.py).
    sizes = [math.prod(shape) for shape in self.shapes]
    pieces = jax.lax.split(vector, sizes, axis=vector.ndim - 1)
    lead = vector.shape[:-1]
    return jax.tree.unflatten(
      self.treedef, [piece.reshape(lead + shape) for piece, shape in zip(pieces, self.shapes)]
    )
