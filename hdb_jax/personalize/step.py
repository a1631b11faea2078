"""Phase 2's functional core: a batch of photos -> one identity each, in one compiled run.

With a hypernetwork, its predicted LiDB weights are frozen and r' more ranks are trained on top
for `steps` steps (the rank-relaxed fast finetune), delta W = [A | A_r][B ; B_r]. The relaxation
(`relaxation`) is either a plain rank-r' LoRA (the paper's; the identity holds LiDB + LoRA, 4.5 MB
on SD1.5) or r' extra LiDB ranks through the same frozen bases (compact: the identity is one LiDB of
rank 1 + r', (1 + r') x 150 numbers per layer). Both export as an exact standard LoRA. Without a
hypernetwork (`hypernet=none`), LiDB (or LoRA) is trained from scratch: the DreamBooth baseline.
Several photos run as one batch, each with its own weights; a photo's result does not depend on
the batch it is in (its random stream comes from its pixels and the seed).
"""

import dataclasses
import time
import zlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hdb_jax import adapters
from hdb_jax.diffusion.base import BaseModel, encode_latents
from hdb_jax.diffusion.prior import make_class_prior
from hdb_jax.engine.trainer import (
  AdapterTrainer,
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


RELAXATIONS = ("lora", "lidb")


def trained_adapter(
  base: BaseModel, config: ml_collections.ConfigDict, hyper: bool
) -> tuple[str, adapters.LidbConfig | None]:
  """What personalization trains: ('lora', None) or ('lidb', the trained LiDB's config).

  With a hypernetwork, `config.relaxation` on top of the prediction (extra LiDB ranks start at
  B = 0); without, `config.baseline` from scratch (LiDB at base's rank and initialisation).
  """
  if hyper:
    relaxation = config.get("relaxation", "lora")
    if relaxation not in RELAXATIONS:
      raise ConfigError(f"relaxation must be 'lora' or 'lidb', not {relaxation!r}")
    if relaxation == "lora":
      return "lora", None
    return "lidb", adapters.relaxed_lidb_config(base.lidb_config, config.lora_rank)
  if config.baseline not in RELAXATIONS:
    raise ConfigError(f"baseline must be 'lidb' or 'lora', not {config.baseline!r}")
  return config.baseline, base.lidb_config if config.baseline == "lidb" else None


def initial_trainable(
  base: BaseModel,
  config: ml_collections.ConfigDict,
  lidb_config: adapters.LidbConfig | None,
  ids: jax.Array,
) -> Any:
  """The trained adapters at step 0, one per photo id (leading photo axis): a LiDB of config
  `lidb_config`, or (None) a LoRA of rank config.lora_rank."""
  keys = [jax.random.fold_in(jax.random.key(config.seed + 1), int(i)) for i in ids]
  if lidb_config is not None:
    return stack_examples([adapters.init_lidb(base.layers, lidb_config, k) for k in keys])
  return stack_examples([adapters.init_lora(base.layers, config.lora_rank, k) for k in keys])


def personalize_images(
  base: BaseModel,
  config: ml_collections.ConfigDict,
  images: np.ndarray,
  predictor: LidbPredictor | None = None,
  compiled: dict[Any, Any] | None = None,
  on_step: Callable[[jax.Array], None] | None = None,
) -> Personalized:
  """Personalizes each photo of images [P, H, W, 3] (in [-1, 1]); returns identities and losses.

  compiled: a cache of compiled finetune runs kept across calls with the same base and config (a
  warm service: one compile per batch size), or None; on_step: called with each finished finetune
  step (make_run's progress hook); a cached run keeps the hook it was compiled with.
  """
  timings = {}
  start = time.perf_counter()
  latents = encode_latents(base, images)
  ids = photo_seeds(config.seed, images)
  frozen, predicted = None, None
  if predictor is not None:
    predicted = predictor(jnp.asarray(images))
    frozen = adapters.lidb_factors(predicted, base.aux)
    timings["predict_s"] = time.perf_counter() - start
  kind, trained_lidb = trained_adapter(base, config, predictor is not None)
  if predictor is not None and config.steps == 0:
    # the prediction alone: nothing to compile or train
    trained_all, losses = None, np.zeros((0, len(images)), np.float32)
  else:
    trained_all, losses = _finetune(
      base, config, trained_lidb, frozen, latents, ids, timings, compiled, on_step
    )
  method = "lidb-from-scratch" if kind == "lidb" else "lora-from-scratch"
  if predictor is not None:
    method = "hyper" if config.steps == 0 else "hyper+finetune"
  identities = []
  for i in range(len(images)):
    trained = None if trained_all is None else unstack_example(trained_all, i)
    lidb, lidb_config, lora = _identity_parts(base, predicted, i, kind, trained, trained_lidb)
    identities.append(
      identity_lib.from_arrays(
        base.layers,
        base.source,
        base.sd.fingerprint(),
        lidb_config,
        lidb=lidb,
        lora=lora,
        token=base.token,
        extra={
          "final_loss": float(losses[-1, i]) if len(losses) else None,
          "steps": config.steps,  # 0 steps: none
          "method": method,
          "relaxation": kind if method == "hyper+finetune" else None,
        },
      )
    )
  return Personalized(identities=identities, losses=losses, timings=timings)


def _identity_parts(
  base: BaseModel,
  predicted: Any,
  index: int,
  kind: str,
  trained: Any,
  trained_lidb: adapters.LidbConfig | None,
) -> tuple[Any, adapters.LidbConfig | None, Any]:
  """(lidb, its config, lora) of photo `index`'s identity.

  The prediction alone is the ~100 KB LiDB identity; the LiDB relaxation appends its ranks to the
  prediction's (one LiDB of rank 1 + r'); the LoRA relaxation keeps a separate LoRA.
  """
  prediction = None if predicted is None else unstack_example(predicted, index)
  if prediction is None:  # from scratch
    if kind == "lidb":
      return trained, base.lidb_config, None
    return None, None, trained
  if trained is None:
    return prediction, base.lidb_config, None
  if kind == "lidb":
    rank = base.lidb_config.rank + trained_lidb.rank
    return (
      adapters.concat_lidb(prediction, trained),
      dataclasses.replace(base.lidb_config, rank=rank),
      None,
    )
  return prediction, base.lidb_config, trained


def finetune_trainer(
  base: BaseModel, config: ml_collections.ConfigDict, trained_lidb: adapters.LidbConfig | None
) -> AdapterTrainer:
  """The finetune's trainer: of a LiDB of config `trained_lidb`, or (None) a rank-lora_rank LoRA;
  its `make_run(config.steps)` is the compiled finetune."""
  if trained_lidb is None:
    return lora_trainer(base, config.lora_rank, config.optim, config.steps)
  return lidb_trainer(base, config.optim, config.steps, trained_lidb)


def _finetune(
  base: BaseModel,
  config: ml_collections.ConfigDict,
  trained_lidb: adapters.LidbConfig | None,
  frozen: Any,
  latents: jax.Array,
  ids: jax.Array,
  timings: dict[str, float],
  compiled: dict[Any, Any] | None = None,
  on_step: Callable[[jax.Array], None] | None = None,
) -> tuple[Any, np.ndarray]:
  """Trains a LiDB of config `trained_lidb` (or, if None, a LoRA of rank lora_rank) on top of the
  frozen prediction if any, for config.steps in one compiled run: (trained params with a photo
  axis, losses [steps, P]). The compiled run is looked up in / added to `compiled` by its inputs'
  shapes."""
  trainer = finetune_trainer(base, config, trained_lidb)
  state = trainer.init(initial_trainable(base, config, trained_lidb, ids))
  prior = make_class_prior(base, config)
  args = run_inputs(base, frozen, latents, config.seed, ids, state, prior)
  start = time.perf_counter()
  leaves, treedef = jax.tree.flatten(args)
  key = (
    trained_lidb,
    config.steps,
    repr(config.optim),
    id(base),
    on_step,
    treedef,
    tuple((x.shape, str(x.dtype)) for x in leaves),
  )
  run = None if compiled is None else compiled.get(key)
  if run is None:
    run = trainer.make_run(config.steps, on_step).lower(*args).compile()
    if compiled is not None:
      compiled[key] = run
  timings["compile_s"] = time.perf_counter() - start
  start = time.perf_counter()
  state, losses = run(*args)
  losses = np.asarray(losses)
  timings["finetune_s"] = time.perf_counter() - start
  check_finite(state, [f"photo {i}" for i in range(len(ids))])
  return trainer.trainable_tree(state), losses
