"""One training stage on world renders (the VAE, the UNet, the recognizer): jitted sharded steps,
orbax checkpoints in WORKDIR/<name>/ (resumed where a killed run stopped), metrics to JSONL and
TensorBoard, a progress bar, an image grid every `sample_every` steps.

    params, record = run_stage(stage, config, workdir, mesh)
"""

import dataclasses
import logging
import os
import sys
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from hdb_jax.engine.optimizers import make_optimizer
from hdb_jax.engine.trainer import TrainingDivergedError
from hdb_jax.formats import train_checkpoint as checkpoint
from hdb_jax.io.images import save_png
from hdb_jax.runtime import mesh as mesh_lib
from hdb_jax.runtime.metrics_log import MetricsWriter
from hdb_jax.runtime.overview import log_parameters
from hdb_jax.world.pretrain import step as step_lib
from hdb_jax.world.pretrain.data import WorldBatches


@dataclasses.dataclass
class Stage:
  """What one stage trains and how.

  settings: steps, batch_size, optim, ema_decay, log_every, checkpoint_every, sample_every.
  batches: (process index, process count) -> this process's WorldBatches.
  samples: (EMA params on one device, step) -> a grid image uint8 [H, W, 3], or None.
  """

  name: str
  settings: ml_collections.ConfigDict
  params: Any
  frozen: Any
  loss: step_lib.LossFn
  batches: Callable[[int, int], WorldBatches]
  samples: Callable[[Any, int], np.ndarray] | None = None


@dataclasses.dataclass
class _Run:
  """A running stage's pieces besides its state."""

  stage: Stage
  directory: str
  step_fn: Any
  frozen: Any
  mngr: Any
  batches: WorldBatches
  writer: MetricsWriter
  mesh: Any
  wall_before: float


def stage_step(
  settings: ml_collections.ConfigDict, params: Any, loss: step_lib.LossFn, seed: int, mesh: Any
) -> tuple[Callable, Any, Any]:
  """A stage's (jitted step, state shapes (jax.eval_shape), state sharding: replicated) for its
  settings, trained params (real or jax.ShapeDtypeStructs) and loss."""
  optimizer = make_optimizer(settings.optim, settings.steps)
  abstract = jax.eval_shape(lambda p: step_lib.init_state(p, optimizer), params)
  sharding = jax.tree.map(lambda _: mesh_lib.replicated(mesh), abstract)
  return step_lib.jit_train_step(loss, settings, seed, mesh, sharding), abstract, sharding


def run_stage(
  stage: Stage, config: ml_collections.ConfigDict, workdir: str, mesh: Any
) -> tuple[Any, dict[str, float]]:
  """Trains (or resumes, or finds finished) one stage in WORKDIR/<name>; returns (its EMA params,
  its record: steps, wall seconds over every run, the last logged metrics).

  config: seed, keep_checkpoints, async_checkpoint, tensorboard."""
  settings = stage.settings
  directory = os.path.join(workdir, stage.name)
  optimizer = make_optimizer(settings.optim, settings.steps)
  step_fn, abstract, sharding = stage_step(settings, stage.params, stage.loss, config.seed, mesh)
  mngr = checkpoint.manager(directory, config.keep_checkpoints, config.async_checkpoint)
  start = mngr.latest_step() or 0
  record = {"steps": 0, "wall_s": 0.0}
  if start:
    target = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, sharding
    )
    state, record = checkpoint.restore_state(mngr, start, target)
    logging.info("stage %s: resuming from step %d", stage.name, start)
  else:
    state = jax.device_put(step_lib.init_state(stage.params, optimizer), sharding)
  log_parameters({f"world {stage.name} (trained)": abstract.params})
  if start >= settings.steps:
    mngr.close()
    logging.info("stage %s: done (%d steps)", stage.name, start)
    return state.ema, record
  run = _Run(
    stage=stage,
    directory=directory,
    step_fn=step_fn,
    frozen=jax.device_put(stage.frozen, mesh_lib.replicated(mesh)),
    mngr=mngr,
    batches=stage.batches(jax.process_index(), jax.process_count()),
    writer=MetricsWriter(directory, config.tensorboard),
    mesh=mesh,
    wall_before=float(record["wall_s"]),
  )
  try:
    return _loop(run, state, start, workdir)
  finally:
    run.batches.close()
    run.writer.close()
    mngr.wait_until_finished()
    mngr.close()


def _loop(run: _Run, state: step_lib.PretrainState, start: int, workdir: str):
  settings, name = run.stage.settings, run.stage.name
  primary = jax.process_index() == 0
  pending, last, started = [], {}, time.perf_counter()
  last_time, record = time.perf_counter(), {}
  interval = 0.5 if sys.stderr.isatty() else 30.0
  with tqdm(total=settings.steps, initial=start, unit="step", desc=f"world {name}",
            disable=not primary, mininterval=interval) as bar:  # fmt: skip
    for step in range(start, settings.steps):
      batch = mesh_lib.global_batch(run.batches.get(step), run.mesh)
      state, metrics = run.step_fn(state, run.frozen, batch)
      pending.append(metrics)
      done = step + 1
      if done % settings.log_every == 0 or done == settings.steps:
        fetched, pending = jax.device_get(pending), []
        if not all(np.isfinite(m["loss"]) for m in fetched):
          raise TrainingDivergedError(
            f"world {name}: the loss became NaN/inf by step {done}; the last checkpoint "
            f"(step {run.mngr.latest_step()}) is kept. Lower the learning rate."
          )
        last = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
        last["step_s"] = (time.perf_counter() - last_time) / len(fetched)
        run.writer.write(done, last)
        bar.set_postfix(loss=f"{last['loss']:.4f}")
        last_time = time.perf_counter()
      every = settings.sample_every
      if run.stage.samples and every and (done % every == 0 or done == settings.steps):
        if primary:
          ema = jax.tree.map(lambda x: x.addressable_data(0), state.ema)
          grid = run.stage.samples(ema, done)
          save_png(os.path.join(workdir, "samples", f"{name}_{done:07d}.png"), grid)
        last_time = time.perf_counter()
      if done % settings.checkpoint_every == 0 or done == settings.steps:
        record = {"steps": done, "wall_s": run.wall_before + time.perf_counter() - started, **last}
        checkpoint.save_state(run.mngr, done, state, record)
      bar.update(1)
  return state.ema, record
