"""Inference schedulers (DDIM, DPM-Solver++) on the base model's noise schedule."""

from typing import Any

from hdb_jax.models.loading import StableDiffusion
from hdb_jax.models.quiet import silence_flax_deprecations

silence_flax_deprecations()

# pylint: disable=wrong-import-position
from diffusers import FlaxDDIMScheduler, FlaxDPMSolverMultistepScheduler

SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type")


def sampling_scheduler(sd: StableDiffusion, kind: str = "ddim") -> tuple[Any, Any]:
  """(scheduler, state) for sampling: kind 'ddim' or 'dpm' (DPM-Solver++ 2M)."""
  schedule = {k: sd.scheduler.config[k] for k in SCHEDULE_KEYS}
  if kind == "ddim":
    scheduler = FlaxDDIMScheduler(**schedule, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
  elif kind == "dpm":
    scheduler = FlaxDPMSolverMultistepScheduler(**schedule, algorithm_type="dpmsolver++", solver_order=2)
  else:
    raise ValueError(f"unknown sampler {kind!r} (ddim, dpm)")
  return scheduler, scheduler.create_state()
