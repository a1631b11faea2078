"""The world pretraining loop: stage 'vae', then stage 'unet' (with the text encoder), each
checkpointed with orbax in WORKDIR/<stage>/ and resumed where a killed run stopped; then the model
in WORKDIR/model (diffusers, Flax) and, with torch, WORKDIR/release (what hdb_jax ships).
With config.init_from, a trained model is continued: its VAE kept, the UNet stage alone.

    pretrain(pretrain_config(''), '/tmp/world')   # python -m hdb_jax.world.pretrain ...
"""

import dataclasses
import json
import logging
import os
import shutil
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from hdb_jax import models
from hdb_jax.diffusion.sampling import SamplingConfig, make_sampler
from hdb_jax.errors import ConfigError
from hdb_jax.formats.hypernet_card import CheckpointMismatchError
from hdb_jax.io.files import atomic_directory, write_text_atomic
from hdb_jax.io.images import image_grid, to_uint8
from hdb_jax.models.functional import RARE_IDENTIFIERS
from hdb_jax.models.loading import ModelLoadError
from hdb_jax.models.pretrained import resolve_model_dir
from hdb_jax.runtime import mesh as mesh_lib
from hdb_jax.runtime.compilation_cache import enable_compilation_cache
from hdb_jax.world.pretrain import step as step_lib
from hdb_jax.world.pretrain.data import WorldBatches
from hdb_jax.world.pretrain.history import CARD, earlier_training, unet_steps
from hdb_jax.world.pretrain.stages import Stage, run_stage
from hdb_jax.world.truth import sampling
from hdb_jax.world.truth.render import render
from hdb_jax.world.truth.scene import caption_words as world_words

# What a sample grid shows: one row per prompt (every context and style), one column per seed.
SAMPLE_PROMPTS = (
  "a face",
  "a smiling face wearing a red hat",
  "a face with sunglasses on a beach",
  "a face wearing a blue hat in a forest",
  "a face with glasses in a city",
  "a face at night",
  "a face in pencil sketch style",
  "a face in pop-art style",
  "a face in watercolour style",
  "a face in pixel art style",
)
SAMPLE_SEEDS = 4
# The architecture fields a resumed run must share with the run that wrote WORKDIR.
ARCHITECTURE = (
  "unet",
  "vae",
  "text_encoder",
  "resolution",
  "max_length",
  "seed",
  "data_seed",
  "init_from",
)
# Module config fields set when the model is made, not by the config: the VAE's latent scaling
# (measured on its latents) and the text encoder's vocabulary (the world tokenizer's size).
MEASURED_FIELDS = ("scaling_factor", "vocab_size")
# The scaling factor is measured on the batches of these steps (past any training run).
SCALE_STEPS = 10**9


def check_config(config: ml_collections.ConfigDict) -> None:
  for name in ("vae_stage", "unet_stage"):
    stage = config[name]
    if stage.steps < 1 or stage.batch_size < 1:
      raise ConfigError(f"{name}.steps and {name}.batch_size must be positive")
  if not 0 <= config.caption_dropout < 1:
    raise ConfigError(f"caption_dropout must be in [0, 1), not {config.caption_dropout}")
  factor = 2 ** (len(config.vae.block_out_channels) - 1)
  if config.resolution != factor * config.unet.sample_size:
    raise ConfigError(
      f"resolution {config.resolution} must be the VAE's factor ({factor}) times the UNet's "
      f"sample_size ({config.unet.sample_size})"
    )
  latent = config.vae.latent_channels
  if not config.unet.in_channels == config.unet.out_channels == latent:
    raise ConfigError(
      f"unet.in_channels and out_channels must be the VAE's latent_channels {latent}"
    )
  if config.text_encoder.hidden_size != config.unet.cross_attention_dim:
    raise ConfigError("text_encoder.hidden_size must equal unet.cross_attention_dim")


def _check_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
  """WORKDIR/config.json holds the architecture; a different one there is a mismatch."""
  path = os.path.join(workdir, "config.json")
  wanted = {k: config[k].to_dict() if hasattr(config[k], "to_dict") else config[k]
            for k in ARCHITECTURE}  # fmt: skip
  wanted = json.loads(json.dumps(wanted))
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      found = {"init_from": "", **{k: v for k, v in json.load(f).items() if k in ARCHITECTURE}}
    if found != wanted:
      diff = sorted(k for k in ARCHITECTURE if found.get(k) != wanted.get(k))
      raise CheckpointMismatchError(
        f"{workdir} holds a world pretraining with other {', '.join(diff)}; use a new --workdir"
      )
  elif jax.process_index() == 0:
    write_text_atomic(path, json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list))


# What a continued run copies of its starting model to WORKDIR/init.
MODEL_PARTS = ("model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler", CARD)


def init_dir(workdir: str) -> str:
  """WORKDIR/init: the starting model, made or copied on a run's first start."""
  return os.path.join(workdir, "init")


def start_model(config: ml_collections.ConfigDict, workdir: str) -> tuple[str, Any]:
  """The starting model in WORKDIR/init, made once: random weights, or a copy of the model of
  config.init_from (its MODEL_PARTS: a resumed run never depends on where it came from); loaded
  through the real loader."""
  root = init_dir(workdir)
  if jax.process_index() == 0 and not os.path.exists(os.path.join(root, "model_index.json")):
    if config.init_from:
      source = resolve_model_dir(config.init_from)
      with atomic_directory(root) as tmp:
        for part in MODEL_PARTS:
          path = os.path.join(source, part)
          if os.path.isdir(path):
            shutil.copytree(path, os.path.join(tmp, part))
          elif os.path.exists(path):
            shutil.copy2(path, tmp)
    else:
      models.create_stable_diffusion(
        root,
        config.unet.to_dict(),
        config.vae.to_dict(),
        config.text_encoder.to_dict(),
        words=tuple(world_words()) + RARE_IDENTIFIERS,
        max_length=config.max_length,
        seed=config.seed,
      )
  multihost_utils.sync_global_devices("world init written")
  return root, models.load_stable_diffusion(root)


def check_init_from(config: ml_collections.ConfigDict) -> None:
  """Before WORKDIR is touched, on every process: config.init_from names a world model of the
  config's architecture (a UserError otherwise); warns when it has no card (its earlier steps,
  and so the data to go on with, are unknown)."""
  source = resolve_model_dir(config.init_from)
  if not os.path.isfile(os.path.join(source, "model_index.json")):
    raise ModelLoadError(
      f"--config.init_from={config.init_from}: no model_index.json in {source} (give a model "
      "directory, e.g. WORKDIR/release or WORKDIR/model of a world pretraining)"
    )
  check_architecture(models.load_stable_diffusion(source), config)
  if not os.path.exists(os.path.join(source, CARD)):
    logging.warning(
      "%s has no %s: its earlier training is unknown, so this run's card cannot list it and its "
      "data starts at step 0 again (WORKDIR/release of a pretraining has the card)",
      source,
      CARD,
    )


def check_architecture(sd: Any, config: ml_collections.ConfigDict) -> None:
  """CheckpointMismatchError unless sd's modules are the config's (MEASURED_FIELDS aside)."""
  found = {
    "unet": dict(sd.unet.config),
    "vae": dict(sd.vae.config),
    "text_encoder": sd.text_encoder.config.to_dict(),
  }
  differ = []
  for part, found_config in found.items():
    wanted = json.loads(json.dumps(config[part].to_dict()))
    got = json.loads(json.dumps({k: found_config.get(k) for k in wanted}, default=list))
    differ += [f"{part}.{k} ({got[k]} != {v})" for k, v in wanted.items()
               if k not in MEASURED_FIELDS and got[k] != v]  # fmt: skip
  if sd.resolution != config.resolution:
    differ.append(f"resolution ({sd.resolution} != {config.resolution})")
  if sd.tokenizer.model_max_length != config.max_length:
    differ.append(f"max_length ({sd.tokenizer.model_max_length} != {config.max_length})")
  if differ:
    raise CheckpointMismatchError(
      f"--config.init_from={config.init_from} is a model of another architecture: "
      + ", ".join(differ)
    )


def _fixed_images(config: ml_collections.ConfigDict, count: int) -> np.ndarray:
  """Held-out identities in varied scenes, float32 [count, R, R, 3] in [-1, 1]."""
  rng = np.random.default_rng([config.data_seed, 0xF1])
  images = [
    render(identity, 0, sampling.random_scene(rng), config.resolution, config.data_seed)
    for identity in sampling.held_out_identities(count)
  ]
  return np.stack(images).astype(np.float32) / 127.5 - 1.0


def _batches(
  config: ml_collections.ConfigDict,
  tokenizer: Any,
  settings: ml_collections.ConfigDict,
  caption_dropout: float,
  step_offset: int = 0,
) -> Callable[[int, int], WorldBatches]:
  return lambda index, count: WorldBatches(
    tokenizer, config.resolution, settings.batch_size, config.data_seed, caption_dropout,
    index, count, step_offset=step_offset,
  )  # fmt: skip


def training_latents(sd: Any, vae_params: Any, config: ml_collections.ConfigDict) -> np.ndarray:
  """The trained encoder's posterior means (unscaled) [N, h, w, C] over vae_stage.scale_batches
  fixed training batches (past the VAE stage's steps)."""
  batches = WorldBatches(sd.tokenizer, config.resolution, config.vae_stage.batch_size,
                         config.data_seed)  # fmt: skip
  encode = jax.jit(lambda p, x: models.vae_posterior(sd, p, x)[0])
  try:
    return np.concatenate([np.asarray(encode(vae_params, batches.get(SCALE_STEPS + i)["image"]))
                           for i in range(config.vae_stage.scale_batches)])  # fmt: skip
  finally:
    batches.close()


def measure_scaling_factor(sd: Any, vae_params: Any, config: ml_collections.ConfigDict) -> float:
  """1 / the std of the trained encoder's latents over fixed training batches, as SD's 0.18215 was
  found."""
  return float(1.0 / np.std(training_latents(sd, vae_params, config)))


def centred_vae(sd: Any, vae_params: Any, config: ml_collections.ConfigDict) -> Any:
  """vae_params with its latents' per-channel mean and std over the fixed training batches folded
  in (models.center_vae_latents): the encoder then gives them mean 0 and std 1 per channel."""
  latents = training_latents(sd, vae_params, config)
  mean, std = latents.mean(axis=(0, 1, 2)), latents.std(axis=(0, 1, 2))
  logging.info("centring the VAE's latents: per-channel means %s, stds %s",
               np.round(mean, 3).tolist(), np.round(std, 3).tolist())  # fmt: skip
  return models.center_vae_latents(vae_params, mean, std)


def _reconstructions(sd: Any, config: ml_collections.ConfigDict) -> Callable:
  images = _fixed_images(config, 8)

  @jax.jit
  def reconstruct(params):
    return models.vae_decode(sd, params, models.vae_encode(sd, params, images))

  def grid(params, step):
    del step
    pair = np.concatenate([images, np.asarray(reconstruct(params))])
    return image_grid(to_uint8(np.clip((pair + 1) / 2, 0, 1)), 8)

  return grid


def _sample_grid(sd: Any, vae_params: Any, config: ml_collections.ConfigDict) -> Callable:
  settings = SamplingConfig(steps=config.sampling.steps, guidance=config.sampling.guidance,
                            sampler="ddim", seed=config.seed)  # fmt: skip
  sample = make_sampler(sd, settings)
  prompts = [p for p in SAMPLE_PROMPTS for _ in range(SAMPLE_SEEDS)]
  cond = jnp.asarray(models.tokenize(sd, prompts))
  uncond = jnp.asarray(models.tokenize(sd, [""] * len(prompts), allow_empty=True))
  noise_ids = jnp.asarray(np.tile(np.arange(SAMPLE_SEEDS), len(SAMPLE_PROMPTS)), jnp.int32)

  def grid(params, step):
    del step
    images = sample({**params, "vae": vae_params}, None, cond, uncond, noise_ids)
    return image_grid(to_uint8(images), SAMPLE_SEEDS)

  return grid


@dataclasses.dataclass
class PretrainResult:
  model_dir: str  # WORKDIR/model: diffusers format, Flax weights
  release_dir: str | None  # WORKDIR/release: fp16 PyTorch safetensors + card (needs torch)
  records: dict[str, dict[str, float]]  # per stage this run trained: steps, wall_s, last metrics
  scaling_factor: float


def pretrain(config: ml_collections.ConfigDict, workdir: str) -> PretrainResult:
  """Trains (or resumes) the world model in WORKDIR; see the module docstring."""
  check_config(config)
  mesh_lib.initialize_distributed(config)
  if config.compilation_cache:
    enable_compilation_cache(config.compilation_cache_dir or None)
  if config.init_from and not os.path.exists(os.path.join(init_dir(workdir), "model_index.json")):
    check_init_from(config)  # once: a resumed run goes on from its copy, whatever the source is now
  os.makedirs(workdir, exist_ok=True)
  _check_workdir(config, workdir)
  root, sd = start_model(config, workdir)
  mesh = mesh_lib.make_mesh(config.mesh)
  earlier = earlier_training(root) if config.init_from else []
  records = {}
  if config.init_from:  # the VAE (and its scaling factor) are the starting model's
    vae_params, scaling = sd.params["vae"], sd.vae_scaling_factor
    logging.info("continuing %s after %d UNet steps", config.init_from, unet_steps(earlier))
  else:
    vae_stage = Stage(
      "vae",
      config.vae_stage,
      sd.params["vae"],
      {},
      step_lib.vae_loss(sd, config.vae_stage.kl_weight, config.vae_stage.crop),
      _batches(config, sd.tokenizer, config.vae_stage, caption_dropout=0.0),
      _reconstructions(sd, config),
    )
    vae_params, records["vae"] = run_stage(vae_stage, config, workdir, mesh)
    vae_params = jax.device_get(vae_params)
    if config.vae_stage.center_latents:
      vae_params = centred_vae(sd, vae_params, config)
    scaling = measure_scaling_factor(sd, vae_params, config)
    logging.info("VAE latent scaling factor: %.5f", scaling)
    sd = models.with_vae_scaling_factor(sd, scaling)
  unet_stage = Stage(
    "unet",
    config.unet_stage,
    {"unet": sd.params["unet"], "text_encoder": sd.params["text_encoder"]},
    vae_params,
    step_lib.unet_loss(sd, config.unet_stage.min_snr_gamma),
    _batches(config, sd.tokenizer, config.unet_stage, config.caption_dropout, unet_steps(earlier)),
    _sample_grid(sd, vae_params, config),
  )
  ema, records["unet"] = run_stage(unet_stage, config, workdir, mesh)
  params = {**jax.device_get(ema), "vae": vae_params}
  model_dir = os.path.join(workdir, "model")
  release_dir = None
  if jax.process_index() == 0:
    models.save_flax_pipeline(sd, params, root, model_dir)
    try:
      from hdb_jax.world.pretrain import release  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      logging.warning("no release written (%s): pip install -e '.[torch]' for it", e)
    else:
      release_dir = release.write_release(
        models.load_stable_diffusion(model_dir), model_dir, os.path.join(workdir, "release"),
        config, records, earlier,
      )  # fmt: skip
  multihost_utils.sync_global_devices("world model written")
  return PretrainResult(model_dir, release_dir, records, scaling)
