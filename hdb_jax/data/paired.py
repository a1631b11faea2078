"""Phase 0's weights paired with their images by identity id (the input of Phase 1).

The weights dataset's reader hands over a plain mapping identity_id -> weights (any pytree of
arrays, e.g. {'<layer>': {'a_train': [a, r], 'b_train': [r, b]}}); the identity ids are those the
image source gives (`hdb_jax.data.sources`), so a weights dataset made from a source pairs with that
same source.
"""

from typing import Any, Mapping, Sequence

import numpy as np
from absl import logging

from hdb_jax.data.sources import Example, FilteredSource, ImageSource, ListSource, SourceError


def paired_examples(
  weights_index: Mapping[str, Any], source: ImageSource
) -> list[tuple[Example, Any]]:
  """(example, its identity's weights) for every example of a listable source whose identity has
  weights.

  Identities on one side only are logged; no pair at all is a SourceError.
  """
  if not isinstance(source, ListSource):
    raise SourceError(
      f"{source.name} is streamed, not listable: use paired_source() with the pipeline"
    )
  pairs = [
    (e, weights_index[e.identity_id]) for e in source.examples if e.identity_id in weights_index
  ]
  _check_overlap(weights_index, {e.identity_id for e in source.examples}, len(pairs), source.name)
  return pairs


def paired_source(weights_index: Mapping[str, Any], source: ImageSource) -> ImageSource:
  """The examples of `source` whose identity has weights (a ListSource stays listable and sharded
  evenly)."""
  if isinstance(source, ListSource):
    pairs = paired_examples(weights_index, source)
    return ListSource(f"{source.name} (paired)", [e for e, _ in pairs])
  if not weights_index:
    raise SourceError(f"{source.name}: the weights index is empty, nothing to pair")
  return FilteredSource(source, weights_index)


def _check_overlap(
  weights_index: Mapping[str, Any], source_ids: set[str], num_pairs: int, name: str
) -> None:
  if not num_pairs:
    example = next(iter(weights_index), None)
    raise SourceError(
      f"{name}: no image has an identity id of the weights index ({len(weights_index)} ids, e.g. "
      f"{example!r}; the source's are e.g. {next(iter(sorted(source_ids)), None)!r})"
    )
  without_images = len(set(weights_index) - source_ids)
  without_weights = len(source_ids - set(weights_index))
  if without_images or without_weights:
    logging.warning(
      "%s: %d identities have no weights and %d weight sets have no image; pairing the %d examples "
      "of the other identities",
      name,
      without_weights,
      without_images,
      num_pairs,
    )


def stack_weights(weights_index: Mapping[str, Any], identity_ids: Sequence[str]) -> Any:
  """The weights of `identity_ids`, each leaf stacked on a new leading axis: [len(identity_ids),
  ...]."""
  import jax  # pylint: disable=import-outside-toplevel

  trees = [weights_index[str(i)] for i in identity_ids]
  return jax.tree_util.tree_map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *trees)
