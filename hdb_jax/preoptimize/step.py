"""Phase 0's functional core: train one LiDB per face for a batch of identities in one jitted run.

Every identity of a batch starts from the same LiDB (`shared_lidb_init`) and has its own noise
stream (its global index); N identities in one batch equal N runs alone (hdb_jax.engine.trainer).
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hdb_jax import adapters
from hdb_jax.diffusion.base import BaseModel, encode_latents
from hdb_jax.diffusion.prior import ClassPrior
from hdb_jax.engine.trainer import (
  AdapterTrainer,
  check_finite,
  lidb_trainer,
  run_inputs,
  stack_examples,
)


def init_lidb_batch(base: BaseModel, seed: int, global_indices: list[int]) -> Any:
  """Initial LiDB params for a batch of identities (leading identity axis): the same start for all.

  A shared start keeps every identity's target in one basin (rank-1 factors are defined only up to
  sign and scale), which is what the hypernetwork learns to predict; its output starts there too
  (see shared_lidb_init).
  """
  return stack_examples([shared_lidb_init(base, seed)] * len(global_indices))


def shared_lidb_init(base: BaseModel, seed: int) -> Any:
  """The LiDB params every Phase 0 identity starts from."""
  return adapters.init_lidb(base.layers, base.lidb_config, jax.random.key(seed + 1))


def train_lidb_batch(
  base: BaseModel,
  config: ml_collections.ConfigDict,
  images: np.ndarray,
  global_indices: list[int],
  trainer: AdapterTrainer | None = None,
  run=None,
  prior: ClassPrior | None = None,
) -> tuple[jax.Array, np.ndarray]:
  """Trains one LiDB per image (a batch of identities).

  Returns (packed LiDB vectors [B, D] (see adapters.lidb_packer), losses [steps, B]).
  """
  trainer = trainer or lidb_trainer(base, config.optim, config.steps)
  run = run or trainer.make_run(config.steps)
  latents = encode_latents(base, images)
  state = trainer.init(init_lidb_batch(base, config.seed, global_indices))
  ids = jnp.asarray(global_indices, jnp.int32)
  state, losses = run(*run_inputs(base, None, latents, config.seed, ids, state, prior))
  check_finite(state, [str(i) for i in global_indices])
  return state.trainable, np.asarray(losses)
