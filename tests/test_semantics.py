"""Meaning, not plumbing: the noise schedule and the training loss equal PyTorch diffusers' own.

Models here are written by PyTorch diffusers/transformers (`save_pretrained`) and read by the
project's loader. (Sampling parity with StableDiffusionPipeline, an exported identity loaded, is in
test_export.)
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from hdb_jax import models
from hdb_jax.diffusion.loss import loss_for_noise
from hdb_jax.models import schedulers
from hdb_jax.models.loading import ModelLoadError, load_scheduler
from hdb_jax.models.torch_models import (
  create_tiny_pytorch_stable_diffusion,
  load_pytorch_text_encoder,
  load_pytorch_unet,
)

SCHEDULES = {
  "sd15_scaled_linear": {
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "steps_offset": 1,
    "clip_sample": False,
  },
  "squaredcos_cap_v2": {"beta_schedule": "squaredcos_cap_v2"},
  "linear_500_steps": {
    "beta_schedule": "linear",
    "beta_start": 1e-4,
    "beta_end": 0.03,
    "num_train_timesteps": 500,
  },
  "v_prediction": {
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "prediction_type": "v_prediction",
    "timestep_spacing": "trailing",
  },
}


def _write_scheduler(root, config: dict) -> str:
  DDPMScheduler(**config).save_pretrained(os.path.join(root, "scheduler"))
  return str(root)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_loaded_schedule_equals_diffusers(tmp_path, name):
  root = _write_scheduler(tmp_path, SCHEDULES[name])
  reference = DDPMScheduler.from_pretrained(os.path.join(root, "scheduler"))
  scheduler, state, config = load_scheduler(root)
  assert scheduler.config.prediction_type == reference.config.prediction_type
  assert scheduler.config.num_train_timesteps == reference.config.num_train_timesteps
  assert scheduler.config.clip_sample == reference.config.clip_sample
  # float32 cumulative products of the same betas, in two libraries: a few ulp.
  np.testing.assert_allclose(
    np.asarray(state.common.alphas_cumprod), reference.alphas_cumprod.numpy(), rtol=2e-6, atol=1e-7
  )
  rng = np.random.default_rng(0)
  latents, noise = (rng.standard_normal((3, 4, 8, 8)).astype(np.float32) for _ in range(2))
  t = np.array(
    [0, reference.config.num_train_timesteps // 2, reference.config.num_train_timesteps - 1]
  )
  nhwc = lambda x: jnp.asarray(np.transpose(x, (0, 2, 3, 1)))  # noqa: E731
  ours = scheduler.add_noise(state, nhwc(latents), nhwc(noise), jnp.asarray(t))
  theirs = reference.add_noise(
    torch.from_numpy(latents), torch.from_numpy(noise), torch.from_numpy(t)
  ).numpy()
  np.testing.assert_allclose(
    np.transpose(np.asarray(ours), (0, 3, 1, 2)), theirs, rtol=1e-5, atol=1e-5
  )
  # The samplers are made from the same config, as diffusers' pipelines make theirs.
  for kind, cls in (("ddim", DDIMScheduler), ("dpm", DPMSolverMultistepScheduler)):
    torch_sampler = cls.from_config(reference.config)
    torch_sampler.set_timesteps(10)
    sampler = schedulers.sampling_scheduler(config, kind)
    ours_t = sampler.set_timesteps(sampler.base_state, 10, (1, 8, 8, 4)).timesteps
    np.testing.assert_array_equal(np.asarray(ours_t), torch_sampler.timesteps.numpy())


def test_sd15_alpha_bar_is_sd15s_not_ddpm_defaults(tmp_path):
  """The finding of issue 12: SD1.5's schedule, not DDPM's linear 1e-4..0.02 with clip_sample."""
  root = tmp_path / "sd15"
  (root / "scheduler").mkdir(parents=True)
  config = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
  }  # SD1.5's scheduler_config.json
  (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
  scheduler, state, _ = load_scheduler(str(root))
  # DDPM defaults: 0.078
  assert float(state.common.alphas_cumprod[500]) == pytest.approx(0.2763, abs=1e-4)
  assert not scheduler.config.clip_sample and scheduler.config.prediction_type == "epsilon"


@pytest.mark.parametrize(
  "bad, message",
  [
    ({"prediction_type": "sample"}, "prediction_type 'sample'"),
    ({"rescale_betas_zero_snr": True}, "rescale_betas_zero_snr"),
    ({"beta_schedule": "sigmoid"}, "beta_schedule 'sigmoid'"),
  ],
)
def test_unsupported_schedules_are_refused(tmp_path, bad, message):
  (tmp_path / "scheduler").mkdir()
  (tmp_path / "scheduler" / "scheduler_config.json").write_text(
    json.dumps({"num_train_timesteps": 1000, **bad})
  )
  with pytest.raises(ModelLoadError, match=message):
    load_scheduler(str(tmp_path))


@pytest.fixture(scope="module")
def torch_models_dirs(tmp_path_factory, tiny_torch_dir):
  """prediction type -> a tiny PyTorch-format model: the shared one (epsilon) and a v-prediction
  one."""
  v_dir = create_tiny_pytorch_stable_diffusion(
    str(tmp_path_factory.mktemp("tiny_torch_v")), seed=1, scheduler_config=SCHEDULES["v_prediction"]
  )
  return {"epsilon": tiny_torch_dir, "v_prediction": v_dir}


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_training_loss_equals_pytorch(torch_models_dirs, prediction_type):
  directory = torch_models_dirs[prediction_type]
  sd = models.load_stable_diffusion(directory)
  assert sd.scheduler.config.prediction_type == prediction_type
  rng = np.random.default_rng(3)
  latents, noise = (rng.standard_normal((3, 4, 8, 8)).astype(np.float32) for _ in range(2))
  timesteps = np.array([5, 480, 990])
  input_ids = models.tokenize(sd, ["a photo of a face", "a painting", "a face in a forest"])

  nhwc = lambda x: jnp.asarray(np.transpose(x, (0, 2, 3, 1)))  # noqa: E731
  ours = jax.jit(lambda p, x, i, n, t: loss_for_noise(sd, p, None, x, i, n, t))(
    sd.params, nhwc(latents), jnp.asarray(input_ids), nhwc(noise), jnp.asarray(timesteps, jnp.int32)
  )

  scheduler = DDPMScheduler.from_pretrained(os.path.join(directory, "scheduler"))
  unet, text_encoder = load_pytorch_unet(directory), load_pytorch_text_encoder(directory)
  x, eps, t = torch.from_numpy(latents), torch.from_numpy(noise), torch.from_numpy(timesteps)
  with torch.no_grad():
    text = text_encoder(torch.from_numpy(input_ids).long())[0]
    pred = unet(scheduler.add_noise(x, eps, t), t, encoder_hidden_states=text).sample
  target = eps if prediction_type == "epsilon" else scheduler.get_velocity(x, eps, t)
  theirs = torch.mean((pred - target) ** 2, dim=(1, 2, 3)).numpy()
  # Per-example MSEs ~2 (random UNet); Flax vs PyTorch UNet outputs agree to ~1.5e-5, so the losses
  # to ~1e-5 relative. A wrong schedule, target or timestep convention moves them by > 1e-2.
  np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-4)
  wrong_target = (
    noise if prediction_type == "v_prediction" else scheduler.get_velocity(x, eps, t).numpy()
  )
  wrong = torch.mean(
    (pred - torch.from_numpy(np.asarray(wrong_target))) ** 2, dim=(1, 2, 3)
  ).numpy()
  # the test can tell the two apart
  assert np.abs(wrong - theirs).max() > 100 * 1e-4 * np.abs(theirs).max()


def test_hub_download_takes_only_what_the_loader_reads():
  """SD1.5's hub repository holds ~20 GB of files the loader never reads (root single-file
  checkpoints, fp16 and EMA variants, the safety checker, both weight formats): one weights file per
  model is fetched."""
  from hdb_jax.models.loading import files_to_download

  read = [
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/flax_model.msgpack",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_flax_model.msgpack",
  ]
  # what the loader never reads:
  skipped = [
    "v1-5-pruned.safetensors",
    "v1-5-pruned-emaonly.safetensors",
    "v1-inference.yaml",
    "feature_extractor/preprocessor_config.json",
    "safety_checker/config.json",
    "safety_checker/model.safetensors",
    "text_encoder/model.safetensors",
    "text_encoder/model.fp16.safetensors",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.non_ema.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
  ]
  assert sorted(files_to_download(read + skipped)) == sorted(read)
  from hdb_jax.config.pieces import SD15

  # runwayml/stable-diffusion-v1-5 was removed
  assert SD15 == "stable-diffusion-v1-5/stable-diffusion-v1-5"
