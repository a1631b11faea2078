"""The world pretraining at toy size: it runs, is killed and resumes to the same state, and writes a
diffusers directory that our loader and PyTorch diffusers both read (CPU, ~2 min cold)."""

import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import traverse_util

from hdb_jax import models
from hdb_jax.config.world import pretrain_config
from hdb_jax.errors import ConfigError
from hdb_jax.formats.hypernet_card import CheckpointMismatchError
from hdb_jax.io.files import file_sha256
from hdb_jax.models import configs
from hdb_jax.runtime.metrics_log import read_metrics
from hdb_jax.world.pretrain import loop, release
from hdb_jax.world.pretrain.data import WorldBatches, world_batch
from hdb_jax.world.pretrain.step import random_crops
from hdb_jax.world.truth.scene import caption, parse_prompt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The toy run every test here shares: 3 VAE steps, 6 UNet steps, checkpoints every 2.
OVERRIDES = {
  "unet_stage.steps": 6,
  "unet_stage.sample_every": 6,
  "unet_stage.checkpoint_every": 2,
  "async_checkpoint": False,
}


def toy_config():
  config = pretrain_config("toy")
  for key, value in OVERRIDES.items():
    parent, _, name = key.rpartition(".")
    setattr(config[parent] if parent else config, name, value)
  return config


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("world_toy"))
  return workdir, loop.pretrain(toy_config(), workdir)


def flat(params):
  return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}


def test_toy_pretraining_writes_a_model_that_both_loaders_read(toy_run):
  from diffusers import StableDiffusionPipeline

  workdir, result = toy_run
  assert result.records["vae"]["steps"] == 3 and result.records["unet"]["steps"] == 6
  assert all(np.isfinite(m["loss"]) for m in read_metrics(os.path.join(workdir, "unet")))
  ours = models.load_model(result.model_dir)
  shipped = models.load_model(result.release_dir)
  # the release is fp16: every weight within fp16's rounding (2^-11 relative) of the fp32 model
  for part in ("unet", "vae", "text_encoder"):
    a, b = flat(ours.params[part]), flat(shipped.params[part])
    assert a.keys() == b.keys()
    for name in a:
      np.testing.assert_allclose(b[name], a[name], rtol=2**-10, atol=1e-7, err_msg=name)
  assert shipped.vae_scaling_factor == pytest.approx(result.scaling_factor)
  assert shipped.scheduler_config["beta_schedule"] == configs.SD15_SCHEDULER["beta_schedule"]
  assert shipped.resolution == 32 and shipped.tokenizer.model_max_length == 32
  models.check_token(shipped, "sks")  # the rare token is one token of the world's tokenizer
  assert len(shipped.tokenizer.tokenize("a smiling face wearing a red hat at night")) == 9
  pipe = StableDiffusionPipeline.from_pretrained(
    result.release_dir, safety_checker=None, requires_safety_checker=False
  )
  image = pipe(
    "a face at night", num_inference_steps=2, height=32, width=32, output_type="np"
  ).images
  assert image.shape == (1, 32, 32, 3) and np.isfinite(image).all()
  card = release.read_card(result.release_dir)
  for name, entry in card["files"].items():
    assert file_sha256(os.path.join(result.release_dir, name)) == entry["sha256"]
  assert {"unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
          "text_encoder/model.safetensors"} <= set(card["files"])  # fmt: skip
  assert "MODEL_CARD.md" in os.listdir(result.release_dir)
  # sample grids: VAE reconstructions (8 renders over their 8 reconstructions) and UNet samples
  from PIL import Image

  samples = os.path.join(workdir, "samples")
  assert Image.open(os.path.join(samples, "vae_0000003.png")).size == (8 * 32, 2 * 32)
  rows, columns = len(loop.SAMPLE_PROMPTS), loop.SAMPLE_SEEDS
  assert Image.open(os.path.join(samples, "unet_0000006.png")).size == (columns * 32, rows * 32)


def test_kill_and_resume_equals_uninterrupted(toy_run, tmp_path):
  reference_dir, reference = toy_run
  workdir = tmp_path / "run"
  cmd = [sys.executable, "-m", "hdb_jax.world.pretrain", "--config=configs/world.py:toy",
         f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in OVERRIDES.items()]  # fmt: skip
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  while not (workdir / "unet" / "checkpoints" / "2").exists():
    assert proc.poll() is None, "the run ended before it could be killed"
    assert time.time() < deadline
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (workdir / "model").exists()
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "stage vae: done (3 steps)" in out.stderr
  assert "stage unet: resuming from step" in out.stderr
  resumed = models.load_model(str(workdir / "model"))
  expected = models.load_model(reference.model_dir)
  # the same programs on the same inputs (the step's noise is a function of the step, the data of
  # the step): bit for bit what the uninterrupted run computed
  for part in ("unet", "vae", "text_encoder"):
    for name, value in flat(resumed.params[part]).items():
      np.testing.assert_array_equal(value, flat(expected.params[part])[name], err_msg=name)
  losses = [m["loss"] for m in read_metrics(str(workdir / "unet"))]
  reference_losses = [m["loss"] for m in read_metrics(os.path.join(reference_dir, "unet"))]
  np.testing.assert_array_equal(losses, reference_losses)


def test_a_workdir_of_another_architecture_is_refused(toy_run, tmp_path):
  shutil.copy(os.path.join(toy_run[0], "config.json"), tmp_path / "config.json")
  config = toy_config()
  config.unet.block_out_channels = (64, 64)
  with pytest.raises(CheckpointMismatchError, match="other unet"):
    loop.pretrain(config, str(tmp_path))


def test_a_continued_run_starts_from_its_model_and_its_card_keeps_the_history(toy_run, tmp_path):
  """init_from: no VAE stage, the model's VAE and scaling kept, the UNet stage starts at its
  weights (at learning rate 0 the continued model is the starting one, up to the float32 rounding
  of the EMA's d·w + (1 - d)·w: a few ulps, so rtol 1e-6), and the new
  card lists the run before it with its UNet steps."""
  _, result = toy_run
  config = toy_config()
  config.init_from = str(tmp_path / "start")
  shutil.copytree(result.release_dir, config.init_from)
  config.unet_stage.steps = 2
  config.unet_stage.optim.learning_rate = 0.0
  workdir = str(tmp_path / "continued")
  loop.pretrain(config, workdir)
  # a rerun goes on from its copy in WORKDIR/init: the source may be gone (or replaced) by then
  shutil.rmtree(config.init_from)
  continued = loop.pretrain(config, workdir)
  assert set(continued.records) == {"unet"} and not os.path.exists(os.path.join(workdir, "vae"))
  start, end = models.load_model(result.release_dir), models.load_model(continued.model_dir)
  assert end.vae_scaling_factor == start.vae_scaling_factor
  for part in ("unet", "vae", "text_encoder"):
    a, b = flat(start.params[part]), flat(end.params[part])
    for name in a:
      assert b[name].dtype == np.float32, name  # fp16 files load as float32 master weights
      np.testing.assert_allclose(b[name], a[name], rtol=1e-6, atol=0, err_msg=name)
  card = release.read_card(continued.release_dir)
  assert [run["stages"]["unet"]["steps"] for run in card["earlier"]] == [6]
  assert card["stages"]["unet"]["steps"] == 2
  assert card["command"].startswith(release.COMMAND.format(variant=":toy"))
  assert f"--config.init_from={config.init_from}" in card["command"]
  markdown = open(os.path.join(continued.release_dir, "MODEL_CARD.md"), encoding="utf-8").read()
  assert "Run 2 of 2" in markdown and "UNet steps in all: 8" in markdown


def test_a_cards_recipe_is_shown_after_its_quality(toy_run, tmp_path):
  """card['recipe'] (markdown: what each choice bought) gets its own section in MODEL_CARD.md; a
  card without one has none."""
  card = release.read_card(toy_run[1].release_dir)
  assert "## The recipe" not in release.model_card_markdown(card)
  card["recipe"] = "| choice | bought |\n|---|---|\n| a wider VAE | 0.49 of renders' energy |\n"
  release.write_card(str(tmp_path), card)
  markdown = (tmp_path / release.MODEL_CARD).read_text()
  section = markdown.split("## The recipe, by measurement")[1]
  assert "| a wider VAE | 0.49 of renders' energy |" in section.split("## Files")[0]
  assert release.read_card(str(tmp_path))["recipe"] == card["recipe"]


def test_face_colour_sees_a_skin_shift_that_other_identities_do_not_make():
  """Renders of other identities in the same prompts differ in skin by identity alone (measured
  RMS ~10 levels over 80 faces); the same renders darkened to 70% differ by ~40: the measure tells
  a model's colour shift from identity spread. A flat image reads its own colour."""
  from hdb_jax.world import quality
  from hdb_jax.world.truth import sampling
  from hdb_jax.world.truth.render import render

  flat = np.full((2, 64, 64, 3), (200, 100, 50), np.uint8)
  np.testing.assert_allclose(quality.face_colour(flat), [[200, 100, 50]] * 2)
  prompts = [p for p in quality.quality_prompts()[:4] for _ in range(20)]

  def renders_of(start):
    ids = sampling.held_out_identities(len(prompts), start=start)
    return np.stack([render(i, 3, parse_prompt(p), 64) for i, p in zip(ids, prompts)])

  renders, others = renders_of(30000), renders_of(40000)
  darker = (others * 0.7).astype(np.uint8)
  same = quality.face_colour_report(others, renders, others, prompts)["rms_error"]
  shifted = quality.face_colour_report(darker, renders, others, prompts)["rms_error"]
  assert same["samples"] == same["renders"] < 20
  assert shifted["samples"] > 2 * same["renders"] + 10


def test_a_continued_run_sees_the_data_after_its_models_steps():
  batches = WorldBatches(None, 32, 4, data_seed=0, step_offset=6)
  try:
    np.testing.assert_array_equal(
      batches.get(0)["image"],
      world_batch(6, range(4), 32, 0)["image"].astype(np.float32) / 127.5 - 1,
    )
  finally:
    batches.close()


def test_continuing_a_bad_model_is_refused_before_the_workdir_is_touched(toy_run, tmp_path):
  config = pretrain_config("")
  config.init_from = toy_run[1].release_dir
  workdir = tmp_path / "run"
  with pytest.raises(CheckpointMismatchError, match="unet.block_out_channels"):
    loop.pretrain(config, str(workdir))
  config = toy_config()
  config.init_from = toy_run[0]  # a pretraining's WORKDIR, not a model in it
  with pytest.raises(models.ModelLoadError, match="no model_index.json"):
    loop.pretrain(config, str(workdir))
  config.init_from = str(tmp_path / "absent")
  with pytest.raises(models.ModelLoadError, match="not found"):
    loop.pretrain(config, str(workdir))
  assert not workdir.exists()  # so the right model can still start there


def test_the_cards_command_reproduces_the_config():
  """Each field that differs from the variant's default is one --config flag, and ml_collections
  reads the command back to the same config (sequences as tuples: it refuses to override lists)."""
  import shlex

  from absl import flags
  from ml_collections import config_flags

  config = toy_config()
  config.unet.block_out_channels = (32, 48)
  config.vae.block_out_channels = (16, 16)
  command = release.command_for(config)
  assert command.startswith(release.COMMAND.format(variant=":toy"))
  args = shlex.split(command)[3:]
  assert "--config.unet.block_out_channels=(32, 48)" in args
  assert "--config.unet_stage.steps=6" in args and "--config.async_checkpoint=False" in args
  world_py = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "world.py")
  argv = ["pretrain"] + [a.replace("configs/world.py", world_py) for a in args]
  parsed = flags.FlagValues()
  config_flags.DEFINE_config_file("config", flag_values=parsed, sys_argv=argv)
  parsed(argv, known_only=True)  # the config flag applies the overrides it reads in argv
  assert parsed.config.to_dict() == config.to_dict()
  assert release.command_for(pretrain_config("")) == release.COMMAND.format(variant="")


def test_quality_report_of_a_toy_model(toy_run):
  """measure_quality end to end on the toy model (2 DDIM steps) with the shipped recognizer: every
  figure present and in range, renders read right, a grid row per prompt (a render, then the
  samples). What the numbers are for the shipped model is test_world_shipped's."""
  from hdb_jax.diffusion.sampling import SamplingConfig
  from hdb_jax.world import quality
  from hdb_jax.world.recognizer.network import load_recognizer

  seeds = 7  # 140 samples: more than the 128 embedding dimensions, so a Frechet distance
  report, grid = quality.measure_quality(
    models.load_model(toy_run[1].model_dir), load_recognizer(), seeds=seeds,
    sampling_config=SamplingConfig(steps=2, guidance=3.0),
  )  # fmt: skip
  prompts = quality.quality_prompts()
  assert report["samples"] == len(prompts) * seeds and report["prompts"] == len(prompts)
  for key in ("mean", "named", "all_correct"):
    assert 0 <= report["world_prompt_samples"][key] <= 1
  assert report["world_prompt_renders"]["mean"] > 0.95  # the recognizer reads renders right
  frechet = report["frechet_world_id"]
  # renders of other identities are near renders; noise is far (the control); 6-step toy
  # samples are no better than noise
  assert frechet["renders"] < frechet["noise"] / 5 and frechet["samples"] > frechet["renders"]
  assert np.isfinite(report["vae_psnr_db"])
  colour = report["face_colour"]
  assert (
    set(colour["rms_error"]) == {"samples", "renders"} and len(colour["mean_rgb"]["samples"]) == 3
  )
  assert grid.shape == (len(prompts) * 32, (seeds + 1) * 32, 3)


def test_bad_configs_are_refused():
  config = toy_config()
  config.resolution = 64
  with pytest.raises(ConfigError, match="VAE's factor"):
    loop.check_config(config)
  config = toy_config()
  config.unet.in_channels = 4
  with pytest.raises(ConfigError, match="latent_channels"):
    loop.check_config(config)
  config = toy_config()
  config.caption_dropout = 1.0
  with pytest.raises(ConfigError, match="caption_dropout"):
    loop.check_config(config)


def test_random_crops_are_windows_of_their_images():
  images = np.arange(2 * 8 * 8 * 3, dtype=np.float32).reshape(2, 8, 8, 3)
  crops = np.asarray(random_crops(jax.numpy.asarray(images), 4, jax.random.key(0)))
  assert crops.shape == (2, 4, 4, 3)
  for image, crop in zip(images, crops):
    y, x = np.argwhere(image[..., 0] == crop[0, 0, 0])[0]
    np.testing.assert_array_equal(image[y : y + 4, x : x + 4], crop)
  assert random_crops(images, 8, jax.random.key(0)) is images


def test_sample_prompts_are_in_the_caption_grammar():
  for prompt in loop.SAMPLE_PROMPTS:
    assert caption(parse_prompt(prompt)) == prompt


def test_world_name_without_a_shipped_model_says_how_to_make_one(monkeypatch, tmp_path):
  from hdb_jax.models import pretrained

  monkeypatch.setattr(pretrained, "WORLD_DIR", str(tmp_path / "absent"))
  with pytest.raises(models.ModelLoadError, match="hdb_jax.world.pretrain"):
    models.load_model("world")


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_min_snr_weights_follow_the_formula_on_the_models_schedule(toy_run, prediction):
  """min(SNR, 5) / SNR for epsilon, min(SNR, 5) / (SNR + 1) for v, with SNR = ᾱ / (1 - ᾱ) from
  diffusers' own DDPMScheduler for the model's scheduler config: 1 at high noise (SNR < 5 from
  t ~ 150 on), falling to ~0.005 at t = 0 for epsilon."""
  import dataclasses

  from diffusers import DDPMScheduler

  from hdb_jax.diffusion.loss import min_snr_weights

  sd = models.load_model(toy_run[1].model_dir)
  config = {**sd.scheduler_config, "prediction_type": prediction}
  sd = dataclasses.replace(sd, scheduler=sd.scheduler.__class__.from_config(config))
  alpha_bar = DDPMScheduler.from_config(config).alphas_cumprod.numpy().astype(np.float64)
  timesteps = np.array([0, 10, 100, 300, 999])
  snr = alpha_bar[timesteps] / (1 - alpha_bar[timesteps])
  expected = np.minimum(snr, 5) / (snr if prediction == "epsilon" else snr + 1)
  np.testing.assert_allclose(min_snr_weights(sd, timesteps, 5.0), expected, rtol=1e-5)
  if prediction == "epsilon":
    assert expected[-1] == 1 and expected[0] < 0.01


def test_centring_the_vae_centres_the_latents_the_unet_stage_sees(toy_run):
  """vae_stage.center_latents: loop.centred_vae folds the training latents' per-channel mean and
  std into the VAE, so the same fixed batches then encode to mean 0 and std 1 per channel, and the
  scaling factor measured after it is 1."""
  _, result = toy_run
  sd = models.load_stable_diffusion(result.model_dir)
  config = toy_config()
  before = loop.training_latents(sd, sd.params["vae"], config)
  assert np.abs(before.mean(axis=(0, 1, 2))).max() > 1e-3  # uncentred to start with
  centred = loop.centred_vae(sd, sd.params["vae"], config)
  after = loop.training_latents(sd, centred, config)
  np.testing.assert_allclose(after.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(after.std(axis=(0, 1, 2)), 1.0, rtol=1e-3)
  assert loop.measure_scaling_factor(sd, centred, config) == pytest.approx(1.0, rel=1e-3)
