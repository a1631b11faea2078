"""Abstract arguments: every array a jax.ShapeDtypeStruct placed by a sharding."""

from typing import Any

import jax
from jax.sharding import Sharding


def placed(tree: Any, sharding: Any) -> Any:
  """tree's array leaves (real or jax.ShapeDtypeStruct) as ShapeDtypeStructs placed by `sharding`:
  one Sharding for every leaf, or a tree of them shaped like `tree`. None stays None."""
  if isinstance(sharding, Sharding):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
  return jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, sharding
  )


def shape_of(shape: tuple[int, ...], dtype: Any, sharding: Sharding) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=sharding)
