"""hdb_jax.aot: every phase's real programs compiled for a TPU topology on this CPU host (libtpu's
compile-only devices), with abstract parameters, and the numbers XLA's TPU compiler gives."""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util

from hdb_jax import models
from hdb_jax.aot.analysis import Measurement
from hdb_jax.aot.chips import GIB, chip_of
from hdb_jax.aot.run import compile_config
from hdb_jax.aot.topology import TopologyError, tpu_target
from hdb_jax.config.phases import hyper_config, personalize_config, preoptimize_config
from hdb_jax.errors import ConfigError
from hdb_jax.models.matmul_conv import matmul_conv_wanted
from hdb_jax.runtime.platform import compiling_for

TOPOLOGY = "v5e:2x2"  # the smallest v5e layout libtpu describes on one host: 4 chips

try:
  tpu_target(TOPOLOGY)
except TopologyError as e:  # no libtpu: pip install -e ".[test]" brings it
  pytest.skip(f"libtpu cannot describe {TOPOLOGY}: {e}", allow_module_level=True)


def kernel_flops(params, side_of, text_tokens: int = 0) -> float:
  """An analytic count of one image's forward pass: 2 x (multiply-adds) of every kernel at the
  side x side positions it runs at (side_of(path); None: once an image, as a ResNet's time
  projection; cross-attention's keys and values on the text tokens), plus attention's two products
  (4 T^2 d in self-attention, 4 T L d across). Elementwise work (norms, activations, softmax) is
  left out: XLA counts it, so its figure is somewhat above 1x this."""
  total = 0.0
  for path, leaf in traverse_util.flatten_dict(params).items():
    name = "/".join(path)
    if path[-1] != "kernel" or (side := side_of(name)) is False:
      continue
    positions = 1 if side is None else side * side
    if re.search(r"attn2/to_[kv]/", name):
      positions = text_tokens
    total += 2 * positions * np.prod(leaf.shape)
    if re.search(r"(attn1/to_q|attentions_\d+/query)/kernel$", name):
      total += 4 * positions * positions * leaf.shape[1]
    elif name.endswith("attn2/to_q/kernel"):
      total += 4 * positions * text_tokens * leaf.shape[1]
  return float(total)


def unet_side(sample_size: int, levels: int):
  """UNet: down block i at sample_size / 2^i (its downsampler's output one level lower), the mid
  block at the lowest, up block i mirrored (its upsampler's conv after the 2x upsampling)."""

  def side_of(name: str):
    if name.startswith("time_embedding") or "time_emb_proj" in name:
      return None
    block, level = re.match(r"(down|up)_blocks_(\d+)", name), 0
    if name.startswith("mid_block"):
      level = levels - 1
    elif block and block[1] == "down":
      level = int(block[2]) + ("downsamplers" in name)
    elif block:
      level = levels - 1 - int(block[2]) - ("upsamplers" in name)
    return sample_size >> level

  return side_of


def decoder_side(latent_size: int, levels: int):
  """The VAE decoder (its encoder is skipped): up block i at latent_size x 2^i (its upsampler's
  conv one level up), conv_out at the image's size, the rest at the latents'."""

  def side_of(name: str):
    if not name.startswith(("decoder/", "post_quant_conv")):
      return False
    if block := re.match(r"decoder/up_blocks_(\d+)", name):
      return latent_size << (int(block[1]) + ("upsamplers" in name))
    return latent_size << (levels - 1) if name.startswith("decoder/conv_out") else latent_size

  return side_of


@pytest.fixture(scope="module")
def tiny_flops() -> dict[str, float]:
  """The tiny model's analytic forward FLOPs for one image: 'unet' (8x8 latents, 77 text tokens)
  and 'decoder' (8x8 latents -> 64 px)."""
  sd = models.abstract_model("tiny")
  size, levels = sd.unet.config.sample_size, len(sd.unet.config.block_out_channels)
  unet = unet_side(size, levels)
  decoder = decoder_side(size, len(sd.vae.config.block_out_channels))
  return {
    "unet": kernel_flops(sd.params["unet"], unet, sd.tokenizer.model_max_length),
    "decoder": kernel_flops(sd.params["vae"], decoder),
  }


@pytest.fixture(scope="module")
def phase1() -> dict[int, Measurement]:
  """Phase 1's tiny train step on a v5e:2x2, at global batch 4 and 8 (1 and 2 images a chip)."""
  found = {}
  for batch in (4, 8):
    config = hyper_config("tiny")
    config.batch_size = batch
    (found[batch],) = compile_config(config, "hyper", [TOPOLOGY])
  return found


@pytest.fixture(scope="module")
def phase2() -> dict[str, Measurement]:
  """Phase 2's tiny programs with configs/hyper.py:tiny's hypernetwork, one photo."""
  found = compile_config(
    personalize_config("tiny"), "personalize", [TOPOLOGY], hypernet=hyper_config("tiny")
  )
  return {m.program: m for m in found}


def test_phase1_train_step_is_split_over_the_topology_and_fits_a_v5e(phase1):
  step = phase1[8]
  assert (step.program, step.topology, step.chip, step.devices) == (
    "phase1/train_step",
    TOPOLOGY,
    "v5e",
    4,
  )
  assert step.hbm_bytes == 16 * GIB
  assert 0 < step.argument_bytes + step.temp_bytes < step.hbm_bytes and step.fits
  # the donated state is reused for the new one: most of the outputs alias arguments
  assert step.alias_bytes > 0.9 * step.output_bytes > 0
  assert step.flops > 0 and step.bytes_accessed > 0 and step.loop_steps == 1
  assert step.step_s == max(step.flops / 197e12, step.bytes_accessed / 819e9)
  assert step.units_per_s == pytest.approx(8 / step.step_s)


def test_phase1_flops_per_chip_follow_the_batch(phase1, tiny_flops):
  """Batch 8 over 4 chips is 2 images a chip, batch 4 is 1: the per-chip work roughly doubles (the
  replicated optimizer update does not grow). Each image costs more than a finetune step's UNet
  forward and backward: its VAE encoding and the hypernetwork's prediction come on top."""
  ratio = phase1[8].flops / phase1[4].flops
  assert 1.7 < ratio < 2.1, ratio
  assert phase1[4].flops > 2 * tiny_flops["unet"]


def test_phase2_programs_compile_on_one_chip(phase2):
  assert list(phase2) == ["phase2/predict", "phase2/finetune", "generate"]
  for m in phase2.values():
    assert m.devices == 1 and m.fits and m.flops > 0 and m.argument_bytes > 0
  assert (phase2["phase2/predict"].loop_steps, phase2["phase2/predict"].unit) == (1, "photos")
  config = personalize_config("tiny")
  assert phase2["phase2/finetune"].loop_steps == config.steps
  assert phase2["phase2/finetune"].alias_bytes > 0  # the finetune state is donated
  assert phase2["generate"].units == len(config.sample_prompts) * config.num_samples


def test_phase2_flops_agree_with_an_analytic_count_of_the_model(phase2, tiny_flops):
  """A finetune step of one photo is the UNet forward and its backward to the activations (the base
  weights are frozen: no kernel gradients), about 2x the forward's products, plus elementwise work,
  the adapters and the text encoder: between 2x and 3.2x (kernel gradients too would pass 3.2x).
  Sampling is 2 UNet passes per image per step (guidance) and one decode per image; XLA counts the
  loops once (the scanned finetune's and the denoising loop's body), so one step of each."""
  unet, decoder = tiny_flops["unet"], tiny_flops["decoder"]
  finetune = phase2["phase2/finetune"].flops
  assert 2.0 * unet < finetune < 3.2 * unet, finetune / unet
  generate = phase2["generate"]
  estimate = generate.units * (2 * unet + decoder)
  assert 1.0 * estimate < generate.flops < 1.5 * estimate, generate.flops / estimate


def test_phase0_batch_compiles():
  """(The world model's steps compile the same way, `python -m hdb_jax.aot
  --config=configs/world.py:toy`; left out here: ~1.5 min of the suite's budget.)"""
  (phase0,) = compile_config(preoptimize_config("tiny"), "lidb", [TOPOLOGY])
  assert phase0.devices == 1 and phase0.fits and phase0.units == 4
  assert phase0.loop_steps == preoptimize_config("tiny").steps


def test_cli_prints_the_table_and_writes_json(tmp_path):
  out = tmp_path / "aot.json"
  result = subprocess.run(
    [sys.executable, "-m", "hdb_jax.aot", "--config=configs/personalize.py:tiny",
     "--hypernet_config=configs/hyper.py:tiny", "--program=phase2/predict",
     f"--topology={TOPOLOGY}", f"--json={out}"],
    capture_output=True, text=True, check=False,
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  )  # fmt: skip
  assert result.returncode == 0, result.stderr[-2000:]
  assert "phase2/predict" in result.stdout and "total/HBM" in result.stdout
  written = json.loads(out.read_text())
  assert written["config"] == "configs/personalize.py:tiny"
  assert written["chips"]["v5e"]["hbm_bytes"] == 16 * GIB
  (program,) = written["programs"]
  assert program["program"] == "phase2/predict" and program["fits"] is True
  assert program["total_bytes"] > program["argument_bytes"] > 0 and program["flops"] > 0


def test_unknown_phase_and_chip_are_refused():
  with pytest.raises(ConfigError, match="no programs for 'evaluate'"):
    compile_config(personalize_config("tiny"), "evaluate", [TOPOLOGY])
  with pytest.raises(ConfigError, match="unknown TPU generation 'v9'"):
    chip_of("v9:2x2")


def test_a_v4_topology_shows_two_cores_a_chip_with_half_its_memory():
  target = tpu_target("v4:2x2x1")
  assert (len(target.devices), target.chips, target.devices_per_chip) == (8, 4, 2)
  assert target.device_hbm_bytes == 16 * GIB
  assert target.device_peak_flops == 275e12 / 2


def test_programs_are_traced_for_the_tpu_not_this_cpu():
  """The CPU's matrix-product convolutions stay out of programs compiled for a TPU."""
  if os.environ.get("HDB_JAX_MATMUL_CONV", "auto") != "auto":
    pytest.skip("HDB_JAX_MATMUL_CONV forces a choice")
  assert matmul_conv_wanted() == (jax.default_backend() == "cpu")
  with compiling_for("tpu"):
    assert not matmul_conv_wanted()


def test_the_abstract_model_reads_no_weights_and_matches_the_loaded_one(
  tiny_dir, tiny_sd, tmp_path, monkeypatch
):
  abstract = models.abstract_model(f"tiny:{tiny_dir}")
  shapes = lambda tree: jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), tree)  # noqa: E731
  assert shapes(abstract.params) == shapes(tiny_sd.params)
  assert abstract.fingerprint() == tiny_sd.fingerprint()
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(abstract.params))
  # 'tiny' with no tiny model made yet: described from models.configs, nothing written
  monkeypatch.setenv("HDB_JAX_CACHE", str(tmp_path / "cache"))
  described = models.abstract_model("tiny")
  assert described.fingerprint() == tiny_sd.fingerprint()
  assert not (tmp_path / "cache").exists()


def test_written_architectures_are_sd15_and_vit_h(tmp_path):
  """`--write_architectures` (offline AOT of the paper's models): the configs describe SD1.5's UNet
  (859,520,964 parameters) and text encoder (123,060,480: CLIP ViT-L/14's), and ViT-H/14 (32
  layers of width 1280 on 16x16 patches of 14 px)."""
  from hdb_jax.models.architectures import write_architectures
  from hdb_jax.models.image_encoder import abstract_image_encoder

  paths = write_architectures(str(tmp_path))
  sd = models.abstract_model(paths["sd15"])
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))  # noqa: E731
  assert count(sd.params["unet"]) == 859_520_964
  assert count(sd.params["text_encoder"]) == 123_060_480
  assert sd.resolution == 512
  encoder = abstract_image_encoder(paths["vit-h14"])
  assert (encoder.hidden_size, encoder.num_tokens) == (1280, 16 * 16 + 1)
  assert len(encoder.params["encoder"]["layer"]) == 32
