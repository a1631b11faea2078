"""Which identities Phase 1 holds out of training, and one image of each (held-out evaluation,
demo).

The held-out identities are chosen by a hash of their id, so the split is stable as the data grows
and every process and tool (Phase 1, the demo, benchmarks/ablation.py) agrees on it.
"""

import hashlib

import ml_collections
import numpy as np

from hdb_jax.data.sources import SourceError, make_source
from hdb_jax.errors import ConfigError


def split_identities(ids: list[str], num_eval: int) -> tuple[list[str], list[str]]:
  """(train ids, held-out ids): the held-out ones chosen by a hash of the id, stable as data
  grows."""
  if num_eval >= len(ids):
    raise ConfigError(f"eval.num_identities={num_eval} leaves no training identity of {len(ids)}")
  by_hash = sorted(ids, key=lambda i: hashlib.sha1(i.encode()).hexdigest())
  held = set(by_hash[:num_eval])
  return [i for i in ids if i not in held], sorted(held)


def identity_images(
  data_config: ml_collections.ConfigDict, ids: list[str], resolution: int, seed: int = 0
) -> np.ndarray:
  """One image per identity id (the first the source lists), float32 [len(ids), H, W, 3] in [-1,
  1]."""
  found: dict[str, np.ndarray] = {}
  source = make_source(data_config)
  for example in source.epoch(0, process_index=0, process_count=1, seed=seed, shuffle=False):
    if example is not None and example.identity_id in ids and example.identity_id not in found:
      found[example.identity_id] = example.load(resolution)
      if len(found) == len(ids):
        break
  missing = [i for i in ids if i not in found]
  if missing:
    raise SourceError(f"no image of identities {missing[:3]} in {data_config.source}")
  return np.stack([found[i] for i in ids])
