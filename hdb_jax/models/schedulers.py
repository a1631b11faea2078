"""Noise schedules from the base model's own scheduler config: DDPM for training, DDIM and
DPM-Solver++ for sampling, computing what diffusers' PyTorch classes made `from_config` of that
config compute.

The Flax DDPM and DDIM are built with diffusers' `from_config`, which keeps every key the class
takes and defaults the rest, so a config written for another class (SD1.5 ships a PNDMScheduler
config) gives the schedule diffusers computes from it; DDIM gets the PyTorch class's timestep
spacings. DPM-Solver++ is our own (diffusers' Flax class ends elsewhere). Config values these cannot
honour are refused, never silently replaced.
"""

import inspect
from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np

from hdb_jax.errors import ConfigError, UserError
from hdb_jax.runtime.quiet import silence_flax_deprecations

silence_flax_deprecations()

# pylint: disable=wrong-import-position
from diffusers import FlaxDDIMScheduler, FlaxDDPMScheduler
from diffusers.schedulers.scheduling_utils_flax import CommonSchedulerState

PREDICTION_TYPES = ("epsilon", "v_prediction")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
TIMESTEP_SPACINGS = ("leading", "linspace", "trailing")
SAMPLERS = ("ddim", "dpm")
# Settings of diffusers' PyTorch schedulers that the Flax classes lack: allowed only at these
# values.
UNSUPPORTED = {
  "rescale_betas_zero_snr": False,
  "thresholding": False,
  "use_karras_sigmas": False,
  "use_exponential_sigmas": False,
  "use_beta_sigmas": False,
  "use_lu_lambdas": False,
  "euler_at_final": False,
}


def _schedule_errors(config: Mapping[str, Any]) -> list[str]:
  errors = []
  prediction = config.get("prediction_type", "epsilon")
  if prediction not in PREDICTION_TYPES:
    errors.append(
      f"prediction_type {prediction!r} is not supported (one of {', '.join(PREDICTION_TYPES)})"
    )
  schedule = config.get("beta_schedule", "linear")
  if config.get("trained_betas") is None and schedule not in BETA_SCHEDULES:
    errors.append(
      f"beta_schedule {schedule!r} is not supported (one of {', '.join(BETA_SCHEDULES)})"
    )
  for key, allowed in UNSUPPORTED.items():
    value = config.get(key, allowed)
    if value not in (allowed, None):
      errors.append(f"{key}={value!r} is not supported by the Flax schedulers")
  return errors


def _from_config(cls: Any, config: Mapping[str, Any]) -> Any:
  """cls.from_config(config) with only the keys cls takes (no 'unexpected key' warnings)."""
  accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "dtype"}
  kwargs = {k: v for k, v in config.items() if k in accepted}
  return cls.from_config(kwargs)


def training_scheduler(config: Mapping[str, Any]) -> tuple[FlaxDDPMScheduler, Any]:
  """(FlaxDDPMScheduler, state) for scheduler_config.json's schedule: what training noises with.

  Raises ValueError for a prediction type, beta schedule or option the Flax classes cannot honour.
  """
  errors = _schedule_errors(config)
  if errors:
    raise UserError("; ".join(errors))
  scheduler = _from_config(FlaxDDPMScheduler, config)
  return scheduler, scheduler.create_state()


def inference_timesteps(config: Mapping[str, Any], steps: int, sampler: str = "ddim") -> np.ndarray:
  """The timesteps diffusers' DDIMScheduler (sampler 'ddim') or DPMSolverMultistepScheduler ('dpm')
  .set_timesteps gives for `steps` under config's `timestep_spacing`: int32 [steps], descending.

  Default spacing: DDIM 'leading', DPM 'linspace'. DPM spreads steps + 1 points for 'leading' and
  'linspace' and drops the last (t near 0); 'trailing' is the same for both.
  """
  train = int(config.get("num_train_timesteps", 1000))
  spacing = config.get("timestep_spacing", "leading" if sampler == "ddim" else "linspace")
  most = train - 1 if sampler == "dpm" else train
  if not 1 <= steps <= most:
    raise ConfigError(f"steps must be in [1, {most}], got {steps}")
  points = steps + 1 if sampler == "dpm" and spacing != "trailing" else steps
  if spacing == "leading":
    timesteps = (np.arange(0, points) * (train // points)).round()[::-1] + int(
      config.get("steps_offset", 0)
    )
  elif spacing == "linspace":
    timesteps = np.linspace(0, train - 1, points).round()[::-1]
  elif spacing == "trailing":
    timesteps = np.round(np.arange(train, 0, -train / steps)) - 1
  else:
    raise UserError(
      f"timestep_spacing {spacing!r} is not supported (one of {', '.join(TIMESTEP_SPACINGS)})"
    )
  return timesteps[:steps].astype(np.int32)


class DdimSampler:
  """diffusers' DDIM: the Flax DDIM scheduler's step, with the timesteps of the PyTorch class's
  spacing (the Flax class knows only 'leading'; its step takes any timesteps)."""

  def __init__(self, config: Mapping[str, Any]):
    self.config = dict(config)
    self.scheduler = _from_config(FlaxDDIMScheduler, config)
    self.base_state = self.scheduler.create_state()

  def set_timesteps(self, state: Any, steps: int, shape: tuple[int, ...]) -> Any:
    state = self.scheduler.set_timesteps(state, steps, shape)
    return state.replace(timesteps=jnp.asarray(inference_timesteps(self.config, steps)))

  def scale_model_input(self, state: Any, sample: jax.Array, timestep: Any) -> jax.Array:
    return self.scheduler.scale_model_input(state, sample, timestep)

  def step(self, state: Any, model_output: jax.Array, timestep: Any, sample: jax.Array) -> Any:
    return self.scheduler.step(state, model_output, timestep, sample)


@flax.struct.dataclass
class DpmState:
  timesteps: jax.Array  # int32 [N]
  alpha: jax.Array  # [N + 1] alpha_t of each timestep, then of the final sigma 0 (1)
  sigma: jax.Array  # [N + 1] sigma_t (VP), the last one 0
  step_index: jax.Array  # [] int32
  previous_x0: jax.Array  # the last step's data prediction (for the second-order update)
  init_noise_sigma: float = flax.struct.field(pytree_node=False, default=1.0)


@flax.struct.dataclass
class DpmOutput:
  prev_sample: jax.Array
  state: DpmState


class DpmSolverSampler:
  """DPM-Solver++ (multistep, order 1 or 2, midpoint), as diffusers' PyTorch
  DPMSolverMultistepScheduler computes it with its defaults: the final step goes to sigma 0
  (`final_sigmas_type='zero'`) with a first-order update, so the last sample is the model's data
  prediction. (diffusers' Flax class ends at timestep 0 instead, and so draws other images.)"""

  def __init__(self, config: Mapping[str, Any]):
    errors = []
    if config.get("algorithm_type", "dpmsolver++") != "dpmsolver++":
      errors.append(f"algorithm_type={config['algorithm_type']!r} (only 'dpmsolver++')")
    if int(config.get("solver_order", 2)) not in (1, 2):
      errors.append(f"solver_order={config['solver_order']} (1 or 2)")
    if config.get("solver_type", "midpoint") != "midpoint":
      errors.append(f"solver_type={config['solver_type']!r} (only 'midpoint')")
    if config.get("final_sigmas_type", "zero") != "zero":
      errors.append(f"final_sigmas_type={config['final_sigmas_type']!r} (only 'zero')")
    if float(config.get("lambda_min_clipped", -float("inf"))) != -float("inf"):
      errors.append("lambda_min_clipped (only -inf)")
    if errors:
      raise UserError("DPM-Solver++ options not supported: " + "; ".join(errors))
    self.config = dict(config)
    self.order = int(config.get("solver_order", 2))
    self.prediction_type = config.get("prediction_type", "epsilon")
    # the betas of every beta_schedule, as diffusers makes them
    ddpm = _from_config(FlaxDDPMScheduler, config)
    self.alphas_cumprod = np.asarray(CommonSchedulerState.create(ddpm).alphas_cumprod, np.float64)
    self.base_state = None

  def set_timesteps(self, state: Any, steps: int, shape: tuple[int, ...]) -> DpmState:
    del state
    timesteps = inference_timesteps(self.config, steps, "dpm")
    ve_sigmas = np.sqrt((1 - self.alphas_cumprod) / self.alphas_cumprod)[timesteps]
    ve_sigmas = np.concatenate([ve_sigmas, [0.0]]).astype(np.float32)
    alpha = 1 / np.sqrt(ve_sigmas.astype(np.float64) ** 2 + 1)
    return DpmState(
      timesteps=jnp.asarray(timesteps),
      alpha=jnp.asarray(alpha, jnp.float32),
      sigma=jnp.asarray(ve_sigmas * alpha, jnp.float32),
      step_index=jnp.zeros((), jnp.int32),
      previous_x0=jnp.zeros(shape, jnp.float32),
    )

  def scale_model_input(self, state: DpmState, sample: jax.Array, timestep: Any) -> jax.Array:
    del state, timestep
    return sample

  def step(
    self, state: DpmState, model_output: jax.Array, timestep: Any, sample: jax.Array
  ) -> DpmOutput:
    del timestep  # the state's step index says where we are
    i = state.step_index
    alpha_s, sigma_s = state.alpha[i], state.sigma[i]
    alpha_t, sigma_t = state.alpha[i + 1], state.sigma[i + 1]
    if self.prediction_type == "epsilon":
      x0 = (sample - sigma_s * model_output) / alpha_s
    else:  # v_prediction
      x0 = alpha_s * sample - sigma_s * model_output
    lam = lambda a, s: jnp.log(a) - jnp.log(s)  # noqa: E731  (inf at sigma 0)
    h = lam(alpha_t, sigma_t) - lam(alpha_s, sigma_s)
    decay = jnp.expm1(-h)  # exp(-h) - 1; -1 at the final sigma 0
    ratio = jnp.where(sigma_t > 0, sigma_t / sigma_s, 0.0)
    first = ratio * sample - alpha_t * decay * x0
    if self.order == 1:
      prev = first
    else:
      previous_lambda = lam(state.alpha[jnp.maximum(i - 1, 0)], state.sigma[jnp.maximum(i - 1, 0)])
      r0 = (lam(alpha_s, sigma_s) - previous_lambda) / h
      second = first - 0.5 * alpha_t * decay * (x0 - state.previous_x0) / r0
      last = i == state.timesteps.shape[0] - 1
      prev = jnp.where((i == 0) | last, first, second)
    new_state = state.replace(step_index=i + 1, previous_x0=x0.astype(state.previous_x0.dtype))
    return DpmOutput(prev_sample=prev.astype(sample.dtype), state=new_state)


def sampling_scheduler(scheduler_config: Mapping[str, Any], kind: str = "ddim") -> Any:
  """The sampler `kind` ('ddim' or 'dpm': DPM-Solver++ 2M) on the base model's schedule, computing
  what diffusers' `DDIMScheduler.from_config` / `DPMSolverMultistepScheduler.from_config` of the
  same config compute. Interface: base_state, set_timesteps(state, steps, shape), scale_model_input,
  step -> .prev_sample, .state. Raises ValueError for an unknown kind or a config option it cannot
  honour."""
  if kind not in SAMPLERS:
    raise ConfigError(f"unknown sampler {kind!r} ({', '.join(SAMPLERS)})")
  errors = _schedule_errors(scheduler_config)
  if errors:
    raise UserError("; ".join(errors))
  return DdimSampler(scheduler_config) if kind == "ddim" else DpmSolverSampler(scheduler_config)
