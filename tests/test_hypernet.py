"""Phase 1: the hypernetwork, its sharded training loop, checkpoints and resume (tiny models, CPU).

The multi-device tests use a shallower UNet (configs.MICRO_UNET: 4 transformer blocks instead of
16): what they check (sharding, processes, resume) does not depend on depth, and compile time would
otherwise dominate the suite. Targets are random LiDB vectors near the shared Phase 0 start, written
as a real weights dataset; Phase 0 itself is tested in test_personalization.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from hdb_jax import data
from hdb_jax.config import phases
from hdb_jax.diffusion.base import setup_base_model
from hdb_jax.engine.optimizers import make_optimizer
from hdb_jax.formats import hypernet_card, train_checkpoint
from hdb_jax.formats.hypernet_loading import load_predictor
from hdb_jax.formats.weights_dataset import create_or_open
from hdb_jax.hypernet.decoder import WeightDecoder
from hdb_jax.hypernet.network import build_hypernet
from hdb_jax.hypernet.slots import slot_layout
from hdb_jax.io.images import load_image
from hdb_jax.models.image_encoder import create_random_image_encoder
from hdb_jax.preoptimize.step import shared_lidb_init
from hdb_jax.runtime.metrics_log import read_metrics
from hdb_jax.train.loop import train
from hdb_jax.train.step import HyperTrainer, LossWeights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_IDENTITIES = 6
# The run the multi-device and resume tests repeat: both losses on, batch 8, 6 steps.
SHARED_RUN = {
  "alpha": 1.0,
  "beta": 1.0,
  "batch_size": 8,
  "steps": 6,
  "checkpoint_every": 2,
  "log_every": 1,
}


@pytest.fixture(scope="module")
def world(tmp_path_factory, micro_dir):
  """(micro SD dir, tiny ViT dir, weights dataset dir) shared by the module."""
  root = tmp_path_factory.mktemp("hyper_world")
  micro = micro_dir
  encoder = create_random_image_encoder(str(root / "vit"))
  config = hyper_config((micro, encoder, ""), {})
  base = setup_base_model(config)
  source = data.make_source(config.data)
  ids = [e.identity_id for e in source.examples]
  start = np.asarray(base_packer(base).pack(shared_lidb_init(base, config.seed)))
  targets = start + 0.05 * np.random.default_rng(0).standard_normal((len(ids), start.size)).astype(
    np.float32
  )
  dataset = create_or_open(
    str(root / "weights"),
    base_model=base.source,
    base_fingerprint=base.sd.fingerprint(),
    layers=base.layers,
    lidb_config=base.lidb_config,
    settings={"test": True},
  )
  dataset.append_chunk(0, ids, [e.name for e in source.examples], targets, [0.0] * len(ids))
  return micro, encoder, str(root / "weights")


def base_packer(base):
  from hdb_jax.adapters import lidb_packer

  return lidb_packer(base.layers, base.lidb_config)


def hyper_config(world, overrides):
  micro, encoder, weights = world
  config = phases.hyper_config("tiny")
  config.pretrained, config.encoder.pretrained, config.weights = micro, encoder, weights
  config.tensorboard, config.eval.every, config.async_checkpoint = False, 0, True
  config.data.num_identities, config.data.num_workers = NUM_IDENTITIES, 0
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


def cli_flags(world, overrides):
  micro, encoder, weights = world
  merged = {
    "pretrained": micro,
    "encoder.pretrained": encoder,
    "weights": weights,
    "tensorboard": False,
    "eval.every": 0,
    "data.num_identities": NUM_IDENTITIES,
    "data.num_workers": 0,
    **overrides,
  }
  return ["--config=configs/hyper.py:tiny"] + [f"--config.{k}={v}" for k, v in merged.items()]


def flat_params(params):
  return {
    "/".join(k): np.asarray(v)
    for k, v in traverse_util.flatten_dict(jax.device_get(params)).items()
  }


def test_slot_layout_and_refinement(tiny_sd):
  from hdb_jax.adapters import LidbConfig, select_layers

  layers = select_layers(tiny_sd.params)
  layout = slot_layout(layers, LidbConfig())
  packed = jnp.asarray(np.random.default_rng(1).standard_normal((2, layout.total)), jnp.float32)
  slots = layout.to_slots(packed)
  np.testing.assert_array_equal(layout.to_packed(slots), packed)
  np.testing.assert_array_equal(np.asarray(slots) * (1 - layout.mask()), 0.0)  # padding stays zero
  assert layout.num_layers == len(layers) and layout.total == base_size(layers)

  model = WeightDecoder(
    slot_sizes=layout.sizes, d_model=16, num_heads=2, depth=2, mlp_dim=32, refine_steps=3
  )
  tokens = jax.random.normal(jax.random.key(0), (2, 5, 8))
  params = model.init(jax.random.key(1), tokens)["params"]
  params["theta_init"] = slots[0]
  apply = jax.jit(model.apply, static_argnums=2)
  out3, out1 = apply({"params": params}, tokens, 3), apply({"params": params}, tokens, 1)
  assert out3.shape == (2, layout.num_layers, layout.slot_size)
  np.testing.assert_array_equal(np.asarray(out3) * (1 - layout.mask()), 0.0)
  # At init the prediction is theta_init plus a small per-image update (head std 1e-3), not zero.
  delta = np.abs(np.asarray(out1) - np.asarray(slots[0]))
  assert 0 < delta.max() < 0.1
  assert not np.allclose(out3, out1)  # refinement steps change the prediction
  assert not np.allclose(out1[0], out1[1])  # the prediction depends on the image


def base_size(layers):
  from hdb_jax.adapters import LidbConfig, lidb_size

  return lidb_size(layers, LidbConfig())


@pytest.mark.parametrize("trainable", [True, False])
def test_encoder_gradients_follow_trainable_flag(world, trainable):
  config = hyper_config(world, {"encoder.trainable": trainable})
  base = setup_base_model(config)
  net = build_hypernet(config, base)
  trainer = HyperTrainer(
    net=net,
    base=base,
    optimizer=make_optimizer(config.optim, 10),
    weights=LossWeights(0.0, 1.0),
    seed=0,
  )
  params = net.init_params(jax.random.key(0))
  frozen = trainer.frozen()
  images = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)), jnp.float32)
  batch = {"image": images, "weights": jnp.ones((2, net.layout.total)) * 0.1}
  keys = trainer.step_keys(jnp.zeros((), jnp.int32), 2)

  def loss(params, frozen):
    return jnp.mean(trainer.per_example_losses(params, frozen, batch, keys)["total"])

  grads, frozen_grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, frozen)
  assert ("encoder" in grads) == trainable
  if trainable:
    assert float(jax.tree.reduce(lambda a, b: a + jnp.sum(jnp.abs(b)), grads["encoder"], 0.0)) > 0
  else:
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(frozen_grads["encoder"]))
  assert float(jnp.max(jnp.abs(grads["decoder"]["head_kernel"]))) > 0


@pytest.fixture(scope="module")
def overfit_run(world, tmp_path_factory):
  """The weight-space loss alone on 4 identities for 150 steps (s=3 refinement): (workdir, metrics,
  config)."""
  workdir = str(tmp_path_factory.mktemp("overfit"))
  config = hyper_config(
    world,
    {
      "alpha": 0.0,
      "beta": 1.0,
      "steps": 150,
      "batch_size": 4,
      "log_every": 10,
      "checkpoint_every": 150,
      "data.num_identities": 4,
      "optim.learning_rate": 3e-3,
      "optim.schedule": "constant",
      "optim.warmup_steps": 0,
      "optim.weight_decay": 0.0,
      "tensorboard": True,
    },
  )
  result = train(config, workdir)
  return workdir, read_metrics(workdir), config, result


def test_overfits_a_handful_of_identities(overfit_run, world):
  workdir, metrics, config, _ = overfit_run
  first, last = metrics[0]["weight_loss"], metrics[-1]["weight_loss"]
  # Targets differ from their mean by 0.05 per entry: weight loss ||θ̂ - θ*||² ~2.5e-3 x D at init
  # (D = the LiDB numbers). Fitting 4 images must remove almost all of it; 10% of the start leaves
  # room for the last steps' Adam noise.
  assert last < 0.1 * first, (first, last)
  assert [m["step"] for m in metrics] == list(range(10, 151, 10))
  assert any(
    n.startswith("events.out.tfevents") for n in os.listdir(os.path.join(workdir, "tensorboard"))
  )
  base = setup_base_model(config)
  predictor = load_predictor(workdir, base)
  assert predictor.step == 150 and predictor.net.decoder.refine_steps == 3
  source = data.make_source(config.data)
  images = np.stack([e.load(base.sd.resolution) for e in source.examples])
  from hdb_jax.formats.weights_dataset import open_dataset

  targets = open_dataset(world[2]).as_mapping()
  predicted = base_packer(base).pack(predictor(jnp.asarray(images)))
  wanted = np.stack([targets[e.identity_id] for e in source.examples])
  assert float(np.mean(np.square(np.asarray(predicted) - wanted))) < 0.1 * first


def test_checkpoint_for_other_layers_is_refused(overfit_run):
  workdir, _, config, _ = overfit_run
  config = config.copy_and_resolve_references()
  config.targets = [t for t in config.targets if "text_encoder" not in t]  # UNet layers only
  base = setup_base_model(config)
  with pytest.raises(hypernet_card.CheckpointMismatchError, match="adapted layers"):
    load_predictor(workdir, base)
  with pytest.raises(hypernet_card.CheckpointMismatchError, match="adapted layers"):
    # training into it with other layers is refused too
    hypernet_card.write_card(workdir, config, base)


def test_checkpoint_whose_aux_bases_regenerate_differently_is_refused(overfit_run, tmp_path):
  import shutil  # pylint: disable=import-outside-toplevel

  from hdb_jax.adapters import AuxBasisMismatchError, aux_basis_hash

  workdir, _, config, _ = overfit_run
  base = setup_base_model(config)
  card = hypernet_card.read_card(workdir)
  assert card["aux_hash"] == aux_basis_hash(base.layers, base.lidb_config)
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  card["aux_hash"] = "0" * 16  # as if made where numpy regenerated other bases from the same seed
  (copy / hypernet_card.CARD).write_text(json.dumps(card))
  with pytest.raises(AuxBasisMismatchError, match="hash 0000000000000000"):
    load_predictor(str(copy), base)
  with pytest.raises(AuxBasisMismatchError):
    hypernet_card.write_card(str(copy), config, base)  # nor can training resume into it


@pytest.fixture(scope="module")
def reference_run(world, tmp_path_factory):
  """SHARED_RUN on this process's single CPU device: (workdir, per-step metrics, final params)."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  result = train(hyper_config(world, SHARED_RUN), workdir)
  return workdir, read_metrics(workdir), flat_params(result.state.params)


def run_worker(world, workdir, dump, overrides, env=None):
  cmd = [
    sys.executable,
    "tests/hypernet_worker.py",
    f"--workdir={workdir}",
    f"--dump={dump}",
  ] + cli_flags(world, {**SHARED_RUN, **overrides})
  return subprocess.Popen(
    cmd,
    cwd=REPO,
    env={**os.environ, **(env or {})},
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def finish(proc, timeout=600):
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out[-3000:]
  return out


@pytest.fixture(scope="module")
def eight_device_proc(world, tmp_path_factory):
  """SHARED_RUN on 8 fake CPU devices, mesh (4, 2) with the base and the trainables (the
  hypernetwork's large leaves and their Adam moments) sharded on 'fsdp', started early: it compiles
  in its own process while this one runs the reference."""
  root = tmp_path_factory.mktemp("eight")
  env = {"XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"}
  sharded = {"mesh": "(4,2)", "shard_frozen": True, "shard_trainable": True}
  proc = run_worker(world, root / "run", root / "params.npz", sharded, env)
  return proc, root


def test_eight_devices_follow_the_single_device_trajectory(eight_device_proc, reference_run):
  proc, root = eight_device_proc
  _, reference, reference_params = reference_run
  finish(proc)
  sharded = read_metrics(str(root / "run"))
  dumped = np.load(root / "params.0.npz")
  assert int(dumped["__devices__"]) == 8
  # Same examples, same noise: only the order of float32 reductions differs between layouts.
  for ref, got in zip(reference, sharded, strict=True):
    np.testing.assert_allclose(got["loss"], ref["loss"], rtol=1e-4)
    np.testing.assert_allclose(got["diffusion_loss"], ref["diffusion_loss"], rtol=1e-4)
  # Adam divides by sqrt(v): rounding in near-zero gradients can move such a weight by up to the
  # learning rate (1e-3 at most here), so parameters are compared at that scale.
  for name, value in reference_params.items():
    np.testing.assert_allclose(dumped[name], value, atol=1e-3, err_msg=name)


def test_tiny_config_with_evaluation_runs_on_eight_devices(world, tmp_path):
  """`python -m hdb_jax.train --config=configs/hyper.py:tiny` on 8 devices as it is (batch 8,
  held-out evaluation with samples on): the evaluation used to crash ("incompatible devices":
  parameters on 8 devices, the frozen encoder on one). Short: 4 steps, evaluated at steps 2 and 4.
  """
  workdir = tmp_path / "run"
  overrides = {
    "steps": 4,
    "eval.every": 2,
    "log_every": 1,
    "checkpoint_every": 4,
    "tensorboard": False,
  }
  cmd = [sys.executable, "-m", "hdb_jax.train", f"--workdir={workdir}"] + cli_flags(
    world, overrides
  )
  env = {
    **os.environ,
    "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8",
  }
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert phases.hyper_config("tiny").batch_size % 8 == 0
  metrics = read_metrics(str(workdir))
  evals = [m for m in metrics if "eval_weight_loss" in m]
  assert [m["step"] for m in evals] == [2, 4]
  assert all(np.isfinite(m["eval_diffusion_loss"]) and m["eval_weight_loss"] > 0 for m in evals)
  for step in (2, 4):
    grid = workdir / "samples" / f"step_{step:07d}" / "grid.png"
    assert grid.is_file() and grid.stat().st_size > 0


def test_two_processes_agree_on_parameters(world, tmp_path):
  port = 20000 + os.getpid() % 20000
  # The weight-space loss only: the diffusion term's sharding is the 8-device test's; this one is
  # about processes (each reading its own shard of the data, joining one mesh, saving one
  # checkpoint).
  procs = [
    run_worker(
      world,
      tmp_path / "run",
      tmp_path / "params.npz",
      {"steps": 3, "alpha": 0.0},
      {
        "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": str(i),
      },
    )
    for i in range(2)
  ]
  for proc in procs:
    finish(proc)
  first, second = (np.load(tmp_path / f"params.{i}.npz") for i in range(2))
  assert int(first["__processes__"]) == 2 and int(first["__devices__"]) == 2
  for name in first.files:
    np.testing.assert_array_equal(first[name], second[name], err_msg=name)
  metrics = read_metrics(str(tmp_path / "run"))
  assert [m["step"] for m in metrics] == [1, 2, 3] and all(np.isfinite(m["loss"]) for m in metrics)
  assert train_checkpoint.latest_params(str(tmp_path / "run"))[0] == 3


def test_kill_and_resume_equals_uninterrupted(world, reference_run, tmp_path):
  _, reference, reference_params = reference_run
  workdir = tmp_path / "run"
  cmd = [sys.executable, "-m", "hdb_jax.train", f"--workdir={workdir}"] + cli_flags(
    world, SHARED_RUN
  )
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  while not (workdir / "checkpoints" / "2").exists():
    assert proc.poll() is None, "the run ended before it could be killed"
    assert time.time() < deadline
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  resumed_from = train_checkpoint.manager(str(workdir)).latest_step()
  assert resumed_from is not None and resumed_from < SHARED_RUN["steps"]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert f"resuming from step {resumed_from}" in out.stderr
  step, params = train_checkpoint.latest_params(str(workdir))
  assert step == SHARED_RUN["steps"]
  # Same program on the same device, same inputs: bit-for-bit what the uninterrupted run computed.
  for name, value in flat_params(params).items():
    np.testing.assert_array_equal(value, reference_params[name], err_msg=name)
  resumed = read_metrics(str(workdir))
  np.testing.assert_array_equal([m["loss"] for m in resumed], [m["loss"] for m in reference])


def test_personalize_uses_a_trained_checkpoint(world, overfit_run, tmp_path):
  """personalize() as the CLI runs it, with --config.hypernet=WORKDIR: prediction + 20 finetune
  steps (the step count and optimizer of test_personalization, so the compiled finetune is shared).
  """
  workdir, _, config, _ = overfit_run
  photo = data.make_source(config.data).examples[0]
  from PIL import Image  # pylint: disable=import-outside-toplevel

  Image.fromarray(np.uint8((photo.load(64) + 1) * 127.5)).save(tmp_path / "face.png")
  from hdb_jax.personalize.loop import personalize

  pconfig = phases.personalize_config("tiny")
  pconfig.image, pconfig.hypernet, pconfig.pretrained = (
    str(tmp_path / "face.png"),
    workdir,
    world[0],
  )
  pconfig.steps, pconfig.optim.learning_rate, pconfig.num_samples, pconfig.export = 20, 3e-2, 0, ""
  (out,) = personalize(pconfig, str(tmp_path / "me"))
  from hdb_jax.formats import identity

  ident = identity.load(os.path.join(out, "identity.safetensors"))
  assert ident.meta.extra["method"] == "hyper+finetune" and ident.meta.lora_rank == 4
  base = setup_base_model(hyper_config(world, {}))
  image = load_image(str(tmp_path / "face.png"), 64)  # as personalize read it
  predicted = load_predictor(workdir, base)(jnp.asarray(image[None]))
  for path, factors in list(ident.lidb.items())[:10]:  # the frozen part is the prediction, as saved
    np.testing.assert_allclose(
      factors["a_train"], np.asarray(predicted[path]["a_train"][0]), rtol=1e-5, atol=1e-6
    )
  assert max(np.abs(f["b"]).max() for f in ident.lora.values()) > 0  # the relaxed LoRA was trained


def test_exported_hypernet_predicts_like_its_checkpoint(world, overfit_run, tmp_path):
  workdir, _, config, _ = overfit_run
  out = tmp_path / "hypernet"
  cmd = [sys.executable, "-m", "hdb_jax.export", f"--hypernet={workdir}", f"--out={out}"]
  result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel

  tensors = load_file(str(out / "hypernet.safetensors"))
  import json  # pylint: disable=import-outside-toplevel

  card = json.loads((out / "hypernet.json").read_text())
  assert card["step"] == 150 and card["tensors"]["decoder/head_kernel"] == list(
    tensors["decoder/head_kernel"].shape
  )
  assert card["slot_order"] == sorted(p for p, _, _ in card["layers"])
  base = setup_base_model(config)
  images = jnp.asarray(np.random.default_rng(3).uniform(-1, 1, (2, 64, 64, 3)), jnp.float32)
  from_export = load_predictor(str(out), base)(images)
  from_checkpoint = load_predictor(workdir, base)(images)
  for path in from_checkpoint:
    np.testing.assert_array_equal(from_export[path]["b_train"], from_checkpoint[path]["b_train"])
  from hdb_jax.formats.hypernet_export import export_hypernet

  with pytest.raises(FileExistsError, match="--overwrite"):
    export_hypernet(workdir, str(out))  # existing output is kept unless asked
  # float16 (how the world hypernetwork ships): half the bytes, loaded back as float32; the
  # prediction moves by fp16's rounding (relative 2^-11 per weight), well under 1% of its scale
  half = tmp_path / "hypernet16"
  export_hypernet(workdir, str(half), dtype=np.float16)
  assert json.loads((half / "hypernet.json").read_text())["dtype"] == "float16"
  full_bytes = (out / "hypernet.safetensors").stat().st_size
  assert (half / "hypernet.safetensors").stat().st_size < 0.51 * full_bytes
  from_half = load_predictor(str(half), base)(images)
  for path in from_checkpoint:
    expected = np.asarray(from_checkpoint[path]["b_train"])
    got = np.asarray(from_half[path]["b_train"])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-2 * np.abs(expected).max() + 1e-6)


def test_image_encoder_loads_pytorch_weights(tmp_path):
  import torch  # pylint: disable=import-outside-toplevel

  from hdb_jax.models.image_encoder import image_features, load_image_encoder
  from hdb_jax.models.torch_models import create_tiny_pytorch_dino

  # a ViT in PyTorch safetensors only
  reference = create_tiny_pytorch_dino(str(tmp_path / "vit_pt"))
  encoder = load_image_encoder(str(tmp_path / "vit_pt"))
  # encoder size: no resize
  images = np.random.default_rng(4).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  pixels = ((images + 1) / 2 - np.asarray(encoder.mean)) / np.asarray(encoder.std)
  with torch.no_grad():
    expected = reference(torch.tensor(pixels.transpose(0, 3, 1, 2))).last_hidden_state.numpy()
  tokens = image_features(encoder, encoder.params, jnp.asarray(images))
  assert tokens.shape == (2, encoder.num_tokens, encoder.hidden_size)
  # fp32 on both sides; same tolerance as DINO's test
  np.testing.assert_allclose(tokens, expected, atol=1e-4)


def test_release_records_the_run_its_files_and_quality(overfit_run, tmp_path):
  from hdb_jax.formats import hypernet_release
  from hdb_jax.io.files import file_table

  workdir, metrics, _, _ = overfit_run
  out = tmp_path / "release"
  cmd = [sys.executable, "-m", "hdb_jax.export", f"--hypernet={workdir}", f"--out={out}"]
  result = subprocess.run(
    cmd + ["--release"], cwd=REPO, capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr[-3000:]
  card = hypernet_release.read_release(str(out))
  export = json.loads((out / "hypernet.json").read_text())
  assert export["dtype"] == "float16" and card["base_fingerprint"] == export["base_fingerprint"]
  assert card["files"] == file_table(str(out), skip=("release.json", "MODEL_CARD.md"))
  assert set(card["files"]) == {"hypernet.safetensors", "hypernet.json"}
  mask = os.umask(0)
  os.umask(mask)
  for name in card["files"]:  # readable by whoever installs it, as a file open() makes
    assert (out / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
  # the command names the config and every override the fixture made
  assert card["command"].startswith("python -m hdb_jax.train --config=configs/hyper.py")
  for override in ("--config.steps=150", "--config.batch_size=4", "--config.alpha=0.0"):
    assert override in card["command"]
  phase1 = card["phase1"]
  assert phase1["steps"] == 150 and phase1["batch_size"] == 4
  logged = [m for m in metrics if "step_s" in m]
  assert phase1["train_step_seconds"] == pytest.approx(sum(10 * m["step_s"] for m in logged))
  assert phase1["last_losses"]["weight_loss"] == logged[-1]["weight_loss"]
  page = (out / "MODEL_CARD.md").read_text()
  assert card["command"] in page and "Not measured yet" in page

  # an evaluation's results go into the card (the shape evaluate() writes, two methods)
  def method(world_id):
    return {
      "description": f"method at {world_id}",
      "finetune_steps": 40,
      "means": {"world_judge": world_id / 2, "world_id": world_id, "world_prompt": 0.9},
      "ci95": {
        "world_judge": [world_id / 2 - 0.1, world_id / 2 + 0.1],
        "world_id": [world_id - 0.1, world_id + 0.1],
        "world_prompt": [0.8, 1.0],
      },
      "timings_s": {"predict_s": 1.0, "finetune_s": 3.0},
      "seconds_per_identity": 2.5,
    }

  results = {
    "metrics": ["world_judge", "world_id", "world_prompt"],
    "identities": {"a": {}, "b": {}},
    "prompts": ["a {token} face"],
    "sampling": {"num_samples": 2, "sampler": "ddim", "steps": 25, "guidance": 7.5},
    "methods": {"base": method(0.2), "full": method(0.7)},
  }
  path = tmp_path / "results.json"
  path.write_text(json.dumps(results))
  cmd = [sys.executable, "-m", "hdb_jax.export", f"--quality={path}", f"--out={out}"]
  result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  quality = hypernet_release.read_release(str(out))["quality"]
  assert quality["identities"] == 2 and quality["methods"]["full"]["means"]["world_id"] == 0.7
  assert quality["methods"]["full"]["seconds_per_identity"] == 2.5
  assert (
    "| full: method at 0.7 | 40 | 0.350 [0.250, 0.450] | 0.700 [0.600, 0.800] | 0.900 [0.800, "
    "1.000] | 2.50 |" in (out / "MODEL_CARD.md").read_text()
  )
  assert hypernet_release.read_release(str(out))["files"] == card["files"]  # weights untouched
