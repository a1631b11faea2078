"""Phase 1's training loop: data in, sharded steps, metrics, held-out evaluation, checkpoints,
resume.

A killed run restarted with the same command resumes from its newest checkpoint with the same
parameters, optimizer state, step (the noise keys are a function of the step) and data position of
every process, so it ends where an uninterrupted run ends.
"""

import dataclasses
import functools
import logging
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from hdb_jax import data, models
from hdb_jax.config.phases import phase0_of
from hdb_jax.diffusion.base import BaseModel, setup_base_model
from hdb_jax.diffusion.generation import generate
from hdb_jax.diffusion.sampling import SamplingConfig
from hdb_jax.engine.trainer import TrainingDivergedError
from hdb_jax.errors import ConfigError
from hdb_jax.formats import identity as identity_lib
from hdb_jax.formats import train_checkpoint as checkpoint
from hdb_jax.formats.hypernet_card import CheckpointMismatchError, write_card
from hdb_jax.formats.weights_dataset import WeightsDataset, open_dataset
from hdb_jax.hypernet.network import build_hypernet
from hdb_jax.io.images import write_images
from hdb_jax.preoptimize.loop import preoptimize
from hdb_jax.runtime import mesh as mesh_lib
from hdb_jax.runtime.metrics_log import MetricsWriter
from hdb_jax.runtime.overview import log_parameters
from hdb_jax.train.step import HyperTrainer, HyperTrainState, make_trainer


def check_config(config: ml_collections.ConfigDict) -> None:
  if config.alpha < 0 or config.beta < 0 or not (config.alpha or config.beta):
    raise ConfigError(
      f"alpha and beta must be >= 0 and not both 0 (got {config.alpha}, {config.beta})"
    )
  if config.steps < 1 or config.batch_size < 1:
    raise ConfigError("steps and batch_size must be positive")
  models.check_remat(config.remat)


def weights_dataset(
  config: ml_collections.ConfigDict, workdir: str, base: BaseModel
) -> WeightsDataset:
  """config.weights, or with 'auto' Phase 0 (config.phase0's settings, this config's base model,
  adapters and data) into WORKDIR/phase0."""
  if config.weights == "auto":
    phase0 = phase0_of(config)
    logging.info("weights='auto': running Phase 0 into %s/phase0 first", workdir)
    dataset = preoptimize(phase0, os.path.join(workdir, "phase0"))
  elif not config.weights:
    raise ConfigError(
      "--config.weights must name a Phase 0 weights dataset (WORKDIR/weights of "
      "hdb_jax.preoptimize), or be 'auto'"
    )
  else:
    dataset = open_dataset(config.weights)
  layers = [[l.path, l.n, l.m] for l in base.layers]
  if dataset.index["layers"] != layers or dataset.index["lidb"] != dataclasses.asdict(
    base.lidb_config
  ):
    raise CheckpointMismatchError(
      f"the weights dataset {dataset.directory} was made for {len(dataset.index['layers'])} layers "
      "/ LiDB "
      f"{dataset.index['lidb']}; this config adapts {len(layers)} layers / "
      f"{dataclasses.asdict(base.lidb_config)}"
    )
  recorded = dataset.index.get("base_fingerprint")
  if recorded is not None and recorded != base.sd.fingerprint():
    raise CheckpointMismatchError(
      f"the weights dataset {dataset.directory} was made for base model fingerprint {recorded} "
      f"({dataset.index.get('base_model')!r}); {base.source!r} is {base.sd.fingerprint()} (another "
      "architecture, or a world model of another world version)"
    )
  return dataset


@dataclasses.dataclass
class Evaluator:
  """Held-out identities: weight and diffusion losses with fixed noise, and a sample grid."""

  trainer: HyperTrainer
  config: ml_collections.ConfigDict
  ids: list[str]
  batch: dict[str, jax.Array]
  evaluate: Any

  def __call__(
    self, params: Any, frozen: dict[str, Any], step: int, workdir: str
  ) -> dict[str, float]:
    # host values: every process passes the same
    keys = np.asarray(
      jax.random.key_data(jax.random.split(jax.random.key(self.config.seed + 7), len(self.ids)))
    )
    losses = self.evaluate(params, frozen, self.batch, keys)
    metrics = {
      "eval_weight_loss": float(jnp.mean(losses["weight"])),
      "eval_weight_mse": float(jnp.mean(losses["weight"])) / self.batch["weights"].shape[-1],
      "eval_diffusion_loss": float(jnp.mean(losses["diffusion"])),
    }
    if self.config.eval.samples:
      # replicated or split on 'fsdp' (shard_trainable): whole on the host, gathered by every
      # process; sampling runs on process 0's first device, beside the frozen encoder and base
      whole = multihost_utils.process_allgather(params, tiled=True)
      if jax.process_index() == 0:
        self._samples(whole, step, workdir)
    return metrics

  def _samples(self, params: Any, step: int, workdir: str) -> None:
    base, net = self.trainer.base, self.trainer.net
    packed = net.jitted_predict(params, net.encoder.params, self.batch["image"], None)
    identities = [
      identity_lib.from_arrays(
        base.layers,
        base.source,
        base.sd.fingerprint(),
        base.lidb_config,
        lidb=net.unpack(packed[i]),
        token=base.token,
      )
      for i in range(len(self.ids))
    ]
    sampling = SamplingConfig(
      steps=self.config.eval.sample_steps,
      guidance=self.config.eval.guidance,
      sampler="ddim",
      seed=self.config.seed,
    )
    images = generate(base.sd, identities, [base.prompt], 1, sampling)
    write_images(
      images, self.ids, [base.prompt], os.path.join(workdir, "samples", f"step_{step:07d}")
    )


def _gathered_positions(position: dict[str, int]) -> list[list[int]]:
  local = np.asarray([position["epoch"], position["offset"]], np.int64)
  if jax.process_count() == 1:
    return [local.tolist()]
  return np.asarray(multihost_utils.process_allgather(local)).reshape(-1, 2).tolist()


@dataclasses.dataclass
class TrainResult:
  metrics: dict[str, float]  # the last logged (and evaluated) metrics
  state: HyperTrainState


def train(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
  """Trains (or resumes) the hypernetwork in WORKDIR."""
  check_config(config)
  mesh_lib.initialize_distributed(config)
  base = setup_base_model(config)
  mesh = mesh_lib.make_mesh(config.mesh)
  dataset = weights_dataset(config, workdir, base)
  targets = dataset.as_mapping()
  train_ids, eval_ids = data.split_identities(
    sorted(targets), config.eval.num_identities if config.eval.every else 0
  )
  net = build_hypernet(config, base)
  trainer = make_trainer(config, base, net)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    write_card(workdir, config, base)
  multihost_utils.sync_global_devices("card written")

  theta_init = np.mean([targets[i] for i in train_ids], axis=0)
  init_state = functools.partial(trainer.initial_state, theta_init)
  abstract = jax.eval_shape(init_state)
  log_parameters({"hypernetwork (trained)": abstract.params, "image encoder": net.encoder.params})
  state_sharding, frozen_sharding = trainer.shardings(
    mesh, abstract, config.shard_frozen, config.shard_trainable
  )
  # from host: every process places its shards
  frozen = jax.device_put(jax.device_get(trainer.frozen()), frozen_sharding)
  mngr = checkpoint.manager(workdir, config.keep_checkpoints, config.async_checkpoint)
  start_step, position = mngr.latest_step(), 0
  if start_step is None:
    state = jax.jit(init_state, out_shardings=state_sharding)()
    start_step = 0
  else:
    target = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, state_sharding
    )
    state, meta = checkpoint.restore_state(mngr, start_step, target)
    position = meta["positions"][jax.process_index()]
    position = {"epoch": position[0], "offset": position[1]}
    logging.info("resuming from step %d", start_step)
  step_fn = trainer.jit_train_step(mesh, state_sharding, frozen_sharding)
  evaluator = None
  if config.eval.every and eval_ids:
    images = data.identity_images(config.data, eval_ids, base.sd.resolution, config.seed)
    eval_batch = {
      "image": images,
      "weights": np.stack([targets[i] for i in eval_ids]),
    }  # numpy: replicated by jit
    evaluator = Evaluator(
      trainer,
      config,
      eval_ids,
      eval_batch,
      trainer.jit_eval(mesh, state_sharding.params, frozen_sharding),
    )
  writer = MetricsWriter(workdir, config.tensorboard)
  iterator = data.make_iterator(
    config.data,
    mesh_lib.per_process_batch(config.batch_size),
    base.sd.resolution,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    seed=config.seed,
    start_position=position,
    weights={i: targets[i] for i in train_ids},
  )
  try:
    loop = _Loop(config, workdir, step_fn, frozen, mesh, mngr, iterator, writer, evaluator)
    return _run(loop, state, start_step)
  finally:
    iterator.close()
    writer.close()
    mngr.wait_until_finished()
    mngr.close()


@dataclasses.dataclass
class _Loop:
  """What the training loop works with besides the state (built once by `train`)."""

  config: ml_collections.ConfigDict
  workdir: str
  step_fn: Any
  frozen: Any
  mesh: Any
  mngr: Any
  iterator: Any
  writer: MetricsWriter
  evaluator: Evaluator | None


def _run(loop: _Loop, state: HyperTrainState, start_step: int) -> TrainResult:
  config = loop.config
  pending, last, nonfinite_run = [], {}, 0
  last_time, last_logged = time.perf_counter(), start_step
  primary = jax.process_index() == 0
  # logs to a file: a line every 30 s, not a stream of redraws
  interval = 0.5 if sys.stderr.isatty() else 30.0
  with tqdm(
    total=config.steps,
    initial=start_step,
    unit="step",
    desc="phase 1",
    disable=not primary,
    mininterval=interval,
  ) as bar:
    for step in range(start_step, config.steps):
      local = next(loop.iterator)
      batch = mesh_lib.global_batch(
        {"image": local["image"], "weights": local["weights"]}, loop.mesh
      )
      state, metrics = loop.step_fn(state, loop.frozen, batch)
      pending.append(metrics)
      done = step + 1
      if done % config.log_every == 0 or done == config.steps:
        fetched = jax.device_get(pending)
        pending = []
        for m in fetched:
          nonfinite_run = 0 if m["finite"] else nonfinite_run + 1
          if nonfinite_run >= config.max_nonfinite_steps:
            raise TrainingDivergedError(
              f"loss or gradients were NaN/inf for {nonfinite_run} steps in a row (at step "
              f"{done}); the last checkpoint (step {loop.mngr.latest_step()}) is kept. Lower the "
              "learning rate."
            )
        elapsed = time.perf_counter() - last_time
        last = {
          k: float(np.mean([m[k] for m in fetched]))
          for k in ("loss", "weight_loss", "weight_mse", "diffusion_loss", "grad_norm")
        }
        last["step_s"] = elapsed / (done - last_logged)
        last["images_per_s"] = config.batch_size / last["step_s"]
        loop.writer.write(done, last)
        bar.set_postfix(loss=f"{last['loss']:.4f}", img_s=f"{last['images_per_s']:.1f}")
        last_time, last_logged = time.perf_counter(), done
      if loop.evaluator is not None and (done % config.eval.every == 0 or done == config.steps):
        eval_metrics = loop.evaluator(state.params, loop.frozen, done, loop.workdir)
        loop.writer.write(done, eval_metrics)
        last.update(eval_metrics)
        last_time = time.perf_counter()
      if done % config.checkpoint_every == 0 or done == config.steps:
        checkpoint.save_state(
          loop.mngr,
          done,
          state,
          {"positions": _gathered_positions(loop.iterator.position), "step": done},
        )
      bar.update(1)
  return TrainResult(metrics=last, state=state)
