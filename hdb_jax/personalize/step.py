"""Phase 2's functional core: a batch of photos -> one identity each, in one compiled run.

With a hypernetwork, its predicted LiDB weights are frozen and a LoRA of rank r' is trained on top
for `steps` steps (rank-relaxed fast finetune): the identity holds both, delta W = [A | A_r][B ;
B_r]. Without one (`hypernet=none`), LiDB (or LoRA) is trained from scratch: the DreamBooth
baseline. Several photos run as one batch, each with its own weights; a photo's result does not
depend on the batch it is in (its random stream comes from its pixels and the seed).
"""

import dataclasses
import time
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hdb_jax import adapters
from hdb_jax.diffusion.base import BaseModel, encode_latents
from hdb_jax.diffusion.prior import make_class_prior
from hdb_jax.engine.trainer import (
  check_finite,
  lidb_trainer,
  lora_trainer,
  run_inputs,
  stack_examples,
  unstack_example,
)
from hdb_jax.errors import ConfigError
from hdb_jax.formats import identity as identity_lib
from hdb_jax.hypernet.predictor import LidbPredictor


@dataclasses.dataclass
class Personalized:
  """The result for a batch of photos: one identity each, the loss curves [steps, P], timings
  (s)."""

  identities: list[identity_lib.Identity]
  losses: np.ndarray
  timings: dict[str, float]


def photo_seeds(seed: int, images: np.ndarray) -> jax.Array:
  """One 31-bit id per photo from its pixels: a photo's random stream is independent of the
  batch."""
  return jnp.asarray(
    [(zlib.crc32(np.ascontiguousarray(im).tobytes()) ^ seed) & 0x7FFFFFFF for im in images],
    jnp.int32,
  )


def _initial_trainable(
  base: BaseModel, config: ml_collections.ConfigDict, kind: str, ids: jax.Array
) -> Any:
  keys = [jax.random.fold_in(jax.random.key(config.seed + 1), int(i)) for i in ids]
  if kind == "lidb":
    return stack_examples([adapters.init_lidb(base.layers, base.lidb_config, k) for k in keys])
  return stack_examples([adapters.init_lora(base.layers, config.lora_rank, k) for k in keys])


def personalize_images(
  base: BaseModel,
  config: ml_collections.ConfigDict,
  images: np.ndarray,
  predictor: LidbPredictor | None = None,
) -> Personalized:
  """Personalizes each photo of images [P, H, W, 3] (in [-1, 1]); returns identities and losses."""
  timings = {}
  start = time.perf_counter()
  latents = encode_latents(base, images)
  ids = photo_seeds(config.seed, images)
  frozen, predicted = None, None
  if predictor is not None:
    predicted = predictor(jnp.asarray(images))
    frozen = adapters.lidb_factors(predicted, base.aux)
    timings["predict_s"] = time.perf_counter() - start
  kind = "lora" if predictor is not None or config.baseline == "lora" else "lidb"
  if kind == "lidb" and config.baseline != "lidb":
    raise ConfigError(f"baseline must be 'lidb' or 'lora', not {config.baseline!r}")
  if (
    predictor is not None and config.steps == 0
  ):  # the prediction alone: nothing to compile or train
    trained_all, losses = None, np.zeros((0, len(images)), np.float32)
  else:
    trained_all, losses = _finetune(base, config, kind, frozen, latents, ids, timings)
  identities = []
  for i in range(len(images)):
    trained = None if trained_all is None else unstack_example(trained_all, i)
    lidb = (
      unstack_example(predicted, i)
      if predicted is not None
      else (trained if kind == "lidb" else None)
    )
    # None for the prediction alone: the ~100 KB LiDB identity
    lora = trained if kind == "lora" else None
    identities.append(
      identity_lib.from_arrays(
        base.layers,
        base.source,
        base.sd.fingerprint(),
        base.lidb_config if lidb is not None else None,
        lidb=lidb,
        lora=lora,
        token=base.token,
        extra={
          "final_loss": float(losses[-1, i]) if len(losses) else None,
          "steps": config.steps,  # 0 steps: none
          "method": ("hyper" if config.steps == 0 else "hyper+finetune")
          if predictor
          else f"{kind}-from-scratch",
        },
      )
    )
  return Personalized(identities=identities, losses=losses, timings=timings)


def _finetune(
  base: BaseModel,
  config: ml_collections.ConfigDict,
  kind: str,
  frozen: Any,
  latents: jax.Array,
  ids: jax.Array,
  timings: dict[str, float],
) -> tuple[Any, np.ndarray]:
  """Trains `kind` ('lidb' or 'lora', on top of the frozen prediction if any) for config.steps in
  one compiled run: (trained params with a photo axis, losses [steps, P])."""
  if kind == "lora":
    trainer = lora_trainer(base, config.lora_rank, config.optim, config.steps)
  else:
    trainer = lidb_trainer(base, config.optim, config.steps)
  state = trainer.init(_initial_trainable(base, config, kind, ids))
  prior = make_class_prior(base, config)
  args = run_inputs(base, frozen, latents, config.seed, ids, state, prior)
  start = time.perf_counter()
  run = trainer.make_run(config.steps).lower(*args).compile()
  timings["compile_s"] = time.perf_counter() - start
  start = time.perf_counter()
  state, losses = run(*args)
  losses = np.asarray(losses)
  timings["finetune_s"] = time.perf_counter() - start
  check_finite(state, [f"photo {i}" for i in range(len(ids))])
  return trainer.trainable_tree(state), losses
