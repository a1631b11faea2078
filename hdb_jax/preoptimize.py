"""Phase 0: pre-optimize one LiDB weight set per training face, many faces per jitted step.

  python -m hdb_jax.preoptimize --config=configs/lidb.py:tiny --workdir=/tmp/phase0

Writes WORKDIR/weights/ (see hdb_jax.weights_dataset). Resumable: a restarted run skips the chunks
already written (a chunk = `identities_per_step` identities trained together for `steps` steps).
"""

import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags
from tqdm import tqdm

from hdb_jax import adapters, data
from hdb_jax.base_model import BaseModel, encode_images, setup_base_model
from hdb_jax.cli import define_config_flags, run_main
from hdb_jax.errors import ConfigError
from hdb_jax.training.engine import AdapterTrainer, check_finite, example_keys, stack_examples
from hdb_jax.training.optim import make_optimizer
from hdb_jax.training.prior import ClassPrior, make_class_prior
from hdb_jax.weights_dataset import WeightsDataset, create_or_open


def collect_faces(config: ml_collections.ConfigDict, resolution: int) -> list[tuple[str, str, np.ndarray]]:
  """One image per identity from config.data: [(identity_id, source name, image [H, W, 3])].

  Bad files are skipped and counted (logged); takes up to config.num_identities (0 = all).
  """
  source = data.make_source(config.data)
  faces, seen, skipped = [], set(), 0
  process, count = jax.process_index(), jax.process_count()
  for example in source.epoch(0, process_index=process, process_count=count, seed=config.seed, shuffle=False):
    if example is None or example.identity_id in seen:
      continue
    try:
      image = example.load(resolution)
    except data.ImageError as e:
      skipped += 1
      logging.warning("skipping %s", e)
      continue
    seen.add(example.identity_id)
    faces.append((example.identity_id, example.name, image))
    if config.num_identities and len(faces) >= config.num_identities:
      break
  if skipped:
    logging.warning("%d bad image(s) skipped", skipped)
  if not faces:
    raise data.SourceError(f"no usable face images in data source {config.data.source!r}")
  return faces


def lidb_trainer(base: BaseModel, optim_config: ml_collections.ConfigDict, steps: int) -> AdapterTrainer:
  return AdapterTrainer(sd=base.sd, to_factors=lambda t: adapters.lidb_factors(t, base.aux),
                        optimizer=make_optimizer(optim_config, steps),
                        packer=adapters.lidb_packer(base.layers, base.lidb_config))


def init_lidb_batch(base: BaseModel, seed: int, global_indices: list[int]) -> Any:
  """Initial LiDB params for a batch of identities (leading identity axis): the same start for all.

  A shared start keeps every identity's target in one basin (rank-1 factors are defined only up to
  sign and scale), which is what the hypernetwork learns to predict; its output starts there too
  (see shared_lidb_init).
  """
  return stack_examples([shared_lidb_init(base, seed)] * len(global_indices))


def shared_lidb_init(base: BaseModel, seed: int) -> Any:
  """The LiDB params every Phase 0 identity starts from."""
  return adapters.init_lidb(base.layers, base.lidb_config, jax.random.PRNGKey(seed + 1))


def train_lidb_batch(base: BaseModel, config: ml_collections.ConfigDict, images: np.ndarray,
                     global_indices: list[int], trainer: AdapterTrainer | None = None, run=None,
                     prior: ClassPrior | None = None) -> tuple[jax.Array, np.ndarray]:
  """Trains one LiDB per image (a batch of identities).

  Returns (packed LiDB vectors [B, D] (see adapters.lidb_packer), losses [steps, B]).
  """
  trainer = trainer or lidb_trainer(base, config.optim, config.steps)
  run = run or trainer.make_run(config.steps)
  latents = encode_images(base, images)
  state = trainer.init(init_lidb_batch(base, config.seed, global_indices))
  ids = jnp.asarray(global_indices, jnp.int32)
  state, losses = run(base.sd.params, None, latents, base.prompt_batch(len(images)), example_keys(config.seed, ids),
                      state, prior)
  check_finite(state, [str(i) for i in global_indices])
  return state.trainable, np.asarray(losses)


def preoptimize(config: ml_collections.ConfigDict, workdir: str) -> WeightsDataset:
  """Runs Phase 0 into workdir/weights (resuming); returns the weights dataset."""
  base = setup_base_model(config)
  faces = collect_faces(config, base.sd.resolution)
  settings = {k: config[k].to_dict() if hasattr(config[k], "to_dict") else config[k]
              for k in ("steps", "identities_per_step", "seed", "optim", "prompt", "token", "prior")}
  dataset = create_or_open(os.path.join(workdir, "weights"), base_model=base.source,
                           base_fingerprint=base.sd.fingerprint(), layers=base.layers,
                           lidb_config=base.lidb_config, settings=settings)
  per_step = config.identities_per_step
  chunks = [list(range(start, min(start + per_step, len(faces)))) for start in range(0, len(faces), per_step)]
  todo = [c for c in range(len(chunks)) if c not in dataset.done_chunks]
  logging.info("%d identities in %d chunks; %d chunk(s) already done", len(faces), len(chunks),
               len(chunks) - len(todo))
  trainer = lidb_trainer(base, config.optim, config.steps)
  run = trainer.make_run(config.steps)
  prior = make_class_prior(base, config)
  with tqdm(total=len(faces), initial=sum(len(chunks[c]) for c in dataset.done_chunks if c < len(chunks)),
            unit="id", desc="phase 0") as bar:
    for chunk in todo:
      members = chunks[chunk]
      padded = members + [members[-1]] * (per_step - len(members))  # same shape: no recompile; dropped below
      start = time.time()
      vectors, losses = train_lidb_batch(base, config, np.stack([faces[i][2] for i in padded]), padded,
                                         trainer, run, prior)
      vectors = np.asarray(vectors)[:len(members)]
      final = losses[-config.final_loss_window:, :len(members)].mean(axis=0)
      dataset.append_chunk(chunk, [faces[i][0] for i in members], [faces[i][1] for i in members], vectors,
                           final.tolist())
      bar.update(len(members))
      bar.set_postfix(ids_per_s=f"{len(members) / (time.time() - start):.2f}", loss=f"{final.mean():.4f}")
  return dataset


def main(argv: list[str]) -> None:
  del argv
  config, workdir = flags.FLAGS.config, flags.FLAGS.workdir
  if not workdir:
    raise ConfigError("--workdir is required")
  dataset = preoptimize(config, workdir)
  losses = dataset.final_losses()
  print(f"wrote {len(losses)} identities to {dataset.directory} "
        f"(mean final loss {np.mean(list(losses.values())):.4f})")


if __name__ == "__main__":
  define_config_flags("configs/lidb.py:tiny")
  run_main(main)
