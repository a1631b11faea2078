"""Phase 0's loop: faces in, a weights dataset out (WORKDIR/weights,
hdb_jax.formats.weights_dataset).

Faces are trained in chunks of `identities_per_step` identities for `steps` steps each (the last
chunk padded so every chunk has the same shape and compiles once). Resumable: a restarted run skips
the chunks the dataset already holds.
"""

import logging
import os
import time

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from hdb_jax import data
from hdb_jax.diffusion.base import setup_base_model
from hdb_jax.diffusion.prior import make_class_prior
from hdb_jax.engine.trainer import lidb_trainer
from hdb_jax.formats.weights_dataset import WeightsDataset, create_or_open
from hdb_jax.io.images import ImageError
from hdb_jax.preoptimize.step import train_lidb_batch


def collect_faces(
  config: ml_collections.ConfigDict, resolution: int
) -> list[tuple[str, str, np.ndarray]]:
  """One image per identity from config.data: [(identity_id, source name, image [H, W, 3])].

  Bad files are skipped and counted (logged); takes up to config.num_identities (0 = all).
  """
  source = data.make_source(config.data)
  faces, seen, skipped = [], set(), 0
  process, count = jax.process_index(), jax.process_count()
  for example in source.epoch(
    0, process_index=process, process_count=count, seed=config.seed, shuffle=False
  ):
    if example is None or example.identity_id in seen:
      continue
    try:
      image = example.load(resolution)
    except ImageError as e:
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


def preoptimize(config: ml_collections.ConfigDict, workdir: str) -> WeightsDataset:
  """Runs Phase 0 into workdir/weights (resuming); returns the weights dataset."""
  base = setup_base_model(config)
  faces = collect_faces(config, base.sd.resolution)
  settings = {
    k: config[k].to_dict() if hasattr(config[k], "to_dict") else config[k]
    for k in ("steps", "identities_per_step", "seed", "optim", "prompt", "token", "prior")
  }
  dataset = create_or_open(
    os.path.join(workdir, "weights"),
    base_model=base.source,
    base_fingerprint=base.sd.fingerprint(),
    layers=base.layers,
    lidb_config=base.lidb_config,
    settings=settings,
    world_version=base.sd.world_version,
  )
  per_step = config.identities_per_step
  chunks = [
    list(range(start, min(start + per_step, len(faces))))
    for start in range(0, len(faces), per_step)
  ]
  todo = [c for c in range(len(chunks)) if c not in dataset.done_chunks]
  logging.info(
    "%d identities in %d chunks; %d chunk(s) already done",
    len(faces),
    len(chunks),
    len(chunks) - len(todo),
  )
  trainer = lidb_trainer(base, config.optim, config.steps)
  run = trainer.make_run(config.steps)
  prior = make_class_prior(base, config)
  with tqdm(
    total=len(faces),
    initial=sum(len(chunks[c]) for c in dataset.done_chunks if c < len(chunks)),
    unit="id",
    desc="phase 0",
  ) as bar:
    for chunk in todo:
      members = chunks[chunk]
      # same shape: no recompile; dropped below
      padded = members + [members[-1]] * (per_step - len(members))
      start = time.time()
      vectors, losses = train_lidb_batch(
        base, config, np.stack([faces[i][2] for i in padded]), padded, trainer, run, prior
      )
      vectors = np.asarray(vectors)[: len(members)]
      final = losses[-config.final_loss_window :, : len(members)].mean(axis=0)
      dataset.append_chunk(
        chunk,
        [faces[i][0] for i in members],
        [faces[i][1] for i in members],
        vectors,
        final.tolist(),
      )
      bar.update(len(members))
      bar.set_postfix(
        ids_per_s=f"{len(members) / (time.time() - start):.2f}", loss=f"{final.mean():.4f}"
      )
  return dataset
