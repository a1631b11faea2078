"""Export to PyTorch: diffusers/PEFT LoRA, kohya LoRA and merged pipeline, loaded back in PyTorch
diffusers.

The chain the issue asks for: a tiny PyTorch pipeline in diffusers format (tiny_torch_dir) -> loaded
into Flax by the project's loader (tiny_torch_sd) -> personalized a few steps (personalize_images: a
LiDB "prediction" with ΔW ~25% of the kernels' norm, frozen, then 3 steps of rank-relaxed LoRA
finetune on a procedural face) -> exported in each format -> loaded back with diffusers
(load_lora_weights / from_pretrained) -> UNet and text-encoder outputs compared with the Flax model
with the identity merged in.

Tolerances (fp32), measured on this model: Flax vs PyTorch on the base weights differ by ~3e-6
(UNet, outputs ~1) and ~1.2e-6 (text encoder, outputs ~3, i.e. a few ulp). With the identity, the
UNet's attention logits grow and so does rounding: Flax vs PyTorch ~2.5e-5 (LoRA) / ~1.2e-5
(merged), while two mathematically equal PyTorch computations, x(W + AB) (merged) and xW + (xA)B
(LoRA), already differ by ~3.7e-5 -- that is the fp32 floor for any comparison across
implementations here. Tolerances sit a few times above it: UNet 1e-4, text encoder 1e-5. The
identity moves the outputs by ~7e-2 (UNet) and ~1.3 (text encoder), which is checked to be >= 100x
the tolerance, so a dropped or mis-scaled delta cannot pass. diffusers and kohya files hold the same
numbers at the same scale, so they must agree exactly.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from safetensors import safe_open
from safetensors.numpy import load_file
from transformers import CLIPTextModel

from hdb_jax import adapters, models
from hdb_jax.export import ExportError, export_identity, kohya, names, peft
from hdb_jax.formats import identity as identity_lib
from hdb_jax.models.describe import describe_model

UNET_TOL = 1e-4
TEXT_TOL = 1e-5
EFFECT_OVER_TOL = 100  # the identity must move outputs by >= this many tolerances
LORA_FORMATS = ("diffusers", "kohya")
FORMATS = LORA_FORMATS + ("merged",)


def _make_identity(
  sd: models.StableDiffusion, base_model: str, fingerprint: str | None = None, seed: int = 0
) -> identity_lib.Identity:
  """LiDB (rank 1) + relaxed LoRA (rank 4), both non-trivial: ΔW ~ 25% of ‖W‖ per layer."""
  layers = adapters.select_layers(sd.params)
  config = adapters.LidbConfig(a=100, b=50, rank=1, aux_seed=7, b_init_std=0.1)
  key_lidb, key_lora = jax.random.split(jax.random.key(seed))
  lidb = adapters.init_lidb(layers, config, key_lidb)
  rng = np.random.default_rng(seed)
  lora = {
    path: {
      "a": np.asarray(p["a"]),
      "b": 0.05 * rng.standard_normal(p["b"].shape).astype(np.float32),
    }
    for path, p in adapters.init_lora(layers, 4, key_lora).items()
  }
  return identity_lib.from_arrays(
    layers,
    base_model=base_model,
    base_fingerprint=fingerprint or sd.fingerprint(),
    lidb_config=config,
    lidb=lidb,
    lora=lora,
  )


def _personalized(tiny_torch_sd, tiny_torch_dir, relaxation: str) -> identity_lib.Identity:
  """The rank-relaxed finetune (3 steps, `relaxation`) on top of a strong LiDB prediction."""
  from hdb_jax.config import phases
  from hdb_jax.diffusion.base import setup_base_model
  from hdb_jax.personalize.step import personalize_images
  from hdb_jax.world.truth.source import synthetic_face

  config = phases.personalize_config("tiny")
  config.pretrained, config.steps, config.optim.learning_rate = tiny_torch_dir, 3, 0.1
  config.relaxation = relaxation
  config.lidb.update(aux_seed=7)
  base = setup_base_model(config)
  predicted = _make_identity(tiny_torch_sd, tiny_torch_dir).lidb
  predictor = lambda images: jax.tree.map(lambda x: jnp.asarray(x)[None], predicted)  # noqa: E731
  face = synthetic_face(0, 0, 0, 64).astype(np.float32)[None] / 127.5 - 1
  ident = personalize_images(base, config, face, predictor).identities[0]
  assert ident.meta.extra["method"] == "hyper+finetune"
  assert ident.meta.extra["relaxation"] == relaxation
  return ident


@pytest.fixture(scope="module")
def identity(tiny_torch_sd, tiny_torch_dir) -> identity_lib.Identity:
  """A personalized identity: the LoRA relaxation (3 steps) on top of a strong LiDB prediction."""
  ident = _personalized(tiny_torch_sd, tiny_torch_dir, "lora")
  assert max(np.abs(f["b"]).max() for f in ident.lora.values()) > 1e-3  # the LoRA part was trained
  return ident


@pytest.fixture(scope="module")
def identity_path(tmp_path_factory, identity) -> str:
  path = str(tmp_path_factory.mktemp("identity") / "me.safetensors")
  identity_lib.save(path, identity)
  return path


@pytest.fixture(scope="module")
def exports(tmp_path_factory, identity_path) -> dict[str, str]:
  """Format -> output directory, each exported once from the identity file."""
  root = tmp_path_factory.mktemp("exports")
  out = {}
  for fmt in FORMATS:
    out[fmt] = str(root / fmt)
    written = export_identity(identity_path, fmt, out[fmt])
    assert written and all(os.path.isfile(p) for p in written)
  return out


@pytest.fixture(scope="module")
def probe(tiny_torch_sd) -> dict[str, np.ndarray]:
  """Inputs for the UNet (latents NHWC, timesteps, text embeddings) and the text encoder (token
  ids)."""
  rng = np.random.default_rng(5)
  return {
    "latents": rng.standard_normal((2, 8, 8, 4)).astype(np.float32),
    "timesteps": np.array([10, 700], np.int32),
    "embeddings": rng.standard_normal((2, 77, 32)).astype(np.float32),
    "input_ids": models.tokenize(tiny_torch_sd, ["a photo of sks face", "a painting of a man"]),
  }


@pytest.fixture(scope="module")
def flax_outputs(tiny_torch_sd, identity, probe) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """'base' / 'identity' -> (UNet output [2, 8, 8, 4], text hidden states [2, 77, 32]) from Flax."""
  sd = tiny_torch_sd
  unet = jax.jit(lambda p, x, t, e: models.unet_apply(sd, p, x, t, e))
  text = jax.jit(lambda p, ids: models.encode_text(sd, p, ids))
  out = {}
  for name, params in (
    ("base", sd.params),
    ("identity", adapters.merge(sd.params, identity.factors())),
  ):
    out[name] = (
      np.asarray(unet(params["unet"], probe["latents"], probe["timesteps"], probe["embeddings"])),
      np.asarray(text(params["text_encoder"], probe["input_ids"])),
    )
  return out


def _torch_outputs(unet, text_encoder, probe) -> tuple[np.ndarray, np.ndarray]:
  with torch.no_grad():
    sample = torch.from_numpy(probe["latents"].transpose(0, 3, 1, 2))
    unet_out = (
      unet(
        sample, torch.from_numpy(probe["timesteps"]).long(), torch.from_numpy(probe["embeddings"])
      )
      .sample.numpy()
      .transpose(0, 2, 3, 1)
    )
    text_out = text_encoder(torch.from_numpy(probe["input_ids"]).long()).last_hidden_state.numpy()
  return unet_out, text_out


def _pipeline(directory: str) -> StableDiffusionPipeline:
  return StableDiffusionPipeline.from_pretrained(
    directory, safety_checker=None, requires_safety_checker=False
  )


def _lora_scalings(module: torch.nn.Module) -> list[float]:
  """The PEFT scaling of every LoRA layer in a module (lora_alpha / r times the adapter scale)."""
  return [
    s
    for m in module.modules()
    if hasattr(m, "lora_A") and hasattr(m, "scaling")
    for s in m.scaling.values()
  ]


@pytest.fixture(scope="module")
def torch_results(tiny_torch_dir, exports, probe) -> dict[str, dict]:
  """'base' and each format -> {'outputs': (unet, text), 'scalings': {model: [...]}} computed in
  PyTorch."""
  results = {}
  base = _pipeline(tiny_torch_dir)
  results["base"] = {"outputs": _torch_outputs(base.unet, base.text_encoder, probe)}
  for fmt in LORA_FORMATS:
    pipe = _pipeline(tiny_torch_dir)
    # the directory: diffusers finds the one .safetensors in it
    pipe.load_lora_weights(exports[fmt])
    results[fmt] = {
      "outputs": _torch_outputs(pipe.unet, pipe.text_encoder, probe),
      "scalings": {
        "unet": _lora_scalings(pipe.unet),
        "text_encoder": _lora_scalings(pipe.text_encoder),
      },
    }
  unet = UNet2DConditionModel.from_pretrained(os.path.join(exports["merged"], "unet")).eval()
  text_encoder = CLIPTextModel.from_pretrained(
    os.path.join(exports["merged"], "text_encoder")
  ).eval()
  results["merged"] = {"outputs": _torch_outputs(unet, text_encoder, probe)}
  return results


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def test_layer_names_are_pytorch_linear_modules(tiny_torch_sd, tiny_torch_dir):
  """Every Flax Dense kernel (not only the default targets) names a PyTorch Linear of shape [m,
  n]."""
  pipe = _pipeline(tiny_torch_dir)
  modules = {
    "unet": dict(pipe.unet.named_modules()),
    "text_encoder": dict(pipe.text_encoder.named_modules()),
  }
  kernels = {
    p[: -len("/kernel")]: leaf
    for p, leaf in adapters.flatten_paths(tiny_torch_sd.params).items()
    if p.endswith("/kernel") and leaf.ndim == 2
  }
  assert len(kernels) > 100
  for path, kernel in kernels.items():
    model, name = names.pytorch_module_name(path)
    module = modules[model].get(name)
    assert isinstance(module, torch.nn.Linear), (path, name)
    assert tuple(module.weight.shape) == tuple(kernel.shape)[::-1], path
  assert names.kohya_name(
    "unet/down_blocks_0/attentions_1/transformer_blocks_0/attn1/to_out_0"
  ) == ("lora_unet_down_blocks_0_attentions_1_transformer_blocks_0_attn1_to_out_0")
  assert names.kohya_name("text_encoder/text_model/encoder/layers/1/self_attn/q_proj") == (
    "lora_te_text_model_encoder_layers_1_self_attn_q_proj"
  )


def test_lora_files_hold_the_factors_exactly(identity, exports):
  """lora_A/lora_down = Aᵀ, lora_B/lora_up = Bᵀ bit for bit, rank 1 + r' = 5, alpha = rank (scale
  1)."""
  factors = identity.factors()
  rank = 1 + identity.meta.lora_rank
  peft_path = os.path.join(exports["diffusers"], peft.WEIGHTS_NAME)
  kohya_path = os.path.join(exports["kohya"], kohya.file_name("me"))
  assert os.listdir(exports["kohya"]) == [os.path.basename(kohya_path)]
  peft_tensors, kohya_tensors = load_file(peft_path), load_file(kohya_path)
  assert len(peft_tensors) == 2 * len(factors) and len(kohya_tensors) == 3 * len(factors)
  for path, (a, b) in factors.items():
    model, module = names.pytorch_module_name(path)
    assert a.shape[1] == rank
    np.testing.assert_array_equal(peft_tensors[f"{model}.{module}.lora_A.weight"], a.T)
    np.testing.assert_array_equal(peft_tensors[f"{model}.{module}.lora_B.weight"], b.T)
    name = names.kohya_name(path)
    np.testing.assert_array_equal(kohya_tensors[f"{name}.lora_down.weight"], a.T)
    np.testing.assert_array_equal(kohya_tensors[f"{name}.lora_up.weight"], b.T)
    assert float(kohya_tensors[f"{name}.alpha"]) == rank
  with safe_open(peft_path, framework="numpy") as f:
    metadata = f.metadata()
  config = json.loads(metadata[peft.ADAPTER_METADATA_KEY])
  for model in ("unet", "text_encoder"):
    assert config[f"{model}.r"] == config[f"{model}.lora_alpha"] == rank
  assert json.loads(metadata["hdb_jax.export"])["token"] == identity.meta.token


@pytest.mark.parametrize("fmt", FORMATS)
def test_pytorch_outputs_equal_flax_with_identity(fmt, flax_outputs, torch_results):
  """Loaded in PyTorch diffusers, each export computes what the Flax model with the identity
  computes."""
  torch_unet, torch_text = torch_results[fmt]["outputs"]
  flax_unet, flax_text = flax_outputs["identity"]
  assert _max_diff(torch_unet, flax_unet) < UNET_TOL
  assert _max_diff(torch_text, flax_text) < TEXT_TOL
  # The identity matters: far more than the tolerance, in Flax and in PyTorch.
  base_unet, base_text = flax_outputs["base"]
  assert _max_diff(flax_unet, base_unet) > EFFECT_OVER_TOL * UNET_TOL
  assert _max_diff(flax_text, base_text) > EFFECT_OVER_TOL * TEXT_TOL
  torch_base_unet, torch_base_text = torch_results["base"]["outputs"]
  assert _max_diff(torch_unet, torch_base_unet) > EFFECT_OVER_TOL * UNET_TOL
  assert _max_diff(torch_text, torch_base_text) > EFFECT_OVER_TOL * TEXT_TOL
  # Sanity: the base models agree across frameworks (the loader's PyTorch parity).
  assert (
    _max_diff(torch_base_unet, base_unet) < UNET_TOL
    and _max_diff(torch_base_text, base_text) < TEXT_TOL
  )


@pytest.mark.parametrize("fmt", LORA_FORMATS)
def test_lora_loads_every_layer_at_scale_one(fmt, identity, torch_results):
  scalings = torch_results[fmt]["scalings"]
  for model in ("unet", "text_encoder"):
    expected = sum(1 for layer in identity.meta.layers if layer.startswith(model + "/"))
    assert len(scalings[model]) == expected > 0
    assert set(scalings[model]) == {1.0}


def test_formats_agree_in_pytorch(torch_results):
  """diffusers and kohya load to the same weights and scale: equal. merged: equal to fp32
  rounding."""
  for i in range(2):
    np.testing.assert_array_equal(
      torch_results["kohya"]["outputs"][i], torch_results["diffusers"]["outputs"][i]
    )
  merged_unet, merged_text = torch_results["merged"]["outputs"]
  assert _max_diff(merged_unet, torch_results["diffusers"]["outputs"][0]) < UNET_TOL
  assert _max_diff(merged_text, torch_results["diffusers"]["outputs"][1]) < TEXT_TOL


def test_merged_weights_are_exact_and_pipeline_complete(tiny_torch_dir, identity, exports):
  """Adapted kernels hold (W + A B)ᵀ; every other tensor is bit-identical to the base model's."""
  out = exports["merged"]
  assert sorted(os.listdir(out)) == [
    "model_index.json",
    "scheduler",
    "text_encoder",
    "tokenizer",
    "unet",
    "vae",
  ]
  deltas = identity.delta_weights()
  for model, file in (
    ("unet", "diffusion_pytorch_model.safetensors"),
    ("text_encoder", "model.safetensors"),
    ("vae", "diffusion_pytorch_model.safetensors"),
  ):
    base, exported = (
      load_file(os.path.join(tiny_torch_dir, model, file)),
      load_file(os.path.join(out, model, file)),
    )
    assert set(exported) == set(base)
    adapted = {
      f"{names.pytorch_module_name(p[: -len('/kernel')])[1]}.weight": d
      for p, d in deltas.items()
      if p.startswith(model + "/")
    }
    assert len(adapted) == (
      0 if model == "vae" else sum(1 for p in deltas if p.startswith(model + "/"))
    )
    for key, value in base.items():
      if key in adapted:
        np.testing.assert_array_equal(exported[key], (value.T + adapted[key]).T)
      else:
        np.testing.assert_array_equal(exported[key], value)
  pipe = StableDiffusionPipeline.from_pretrained(out)
  assert pipe.safety_checker is None and type(pipe.scheduler).__name__ == "DDPMScheduler"


def test_describe_model_matches_the_loaded_model(tiny_torch_dir, tiny_torch_sd):
  description = describe_model(tiny_torch_dir)
  assert description.fingerprint == tiny_torch_sd.fingerprint()
  # pylint: disable=unnecessary-lambda-assignment
  shapes = lambda tree: jax.tree_util.tree_map(lambda x: tuple(x.shape), tree)
  assert shapes(description.params) == shapes(
    {k: tiny_torch_sd.params[k] for k in ("unet", "text_encoder")}
  )


def test_refuses_identity_of_another_base_model(tmp_path, tiny_torch_sd, tiny_torch_dir, identity):
  other = _make_identity(tiny_torch_sd, "some/other-model", fingerprint="0123456789abcdef")
  for fmt in FORMATS:
    with pytest.raises(
      identity_lib.IdentityFileError, match=r"different base model.*fingerprint 0123456789abcdef"
    ):
      export_identity(other, fmt, str(tmp_path / fmt), pretrained=tiny_torch_dir)
    assert not os.path.exists(tmp_path / fmt)
  # A layer the model has with another shape (e.g. SD2's 1024-wide text encoder): named in the
  # message.
  path = "text_encoder/text_model/encoder/layers/0/self_attn/q_proj"
  meta = identity.meta
  misshaped = identity_lib.Identity(
    meta=identity_lib.IdentityMeta(**{**meta.__dict__, "layers": {**meta.layers, path: (64, 64)}}),
    lidb=identity.lidb,
    lora=identity.lora,
  )
  with pytest.raises(identity_lib.IdentityFileError, match="layers/0/self_attn/q_proj"):
    export_identity(misshaped, "diffusers", str(tmp_path / "shape"), pretrained=tiny_torch_dir)
  # The identity's own base model passes the check.
  assert export_identity(identity, "diffusers", str(tmp_path / "ok"), pretrained=tiny_torch_dir)


def test_no_overwrite_without_flag(tmp_path, tiny_torch_sd, tiny_torch_dir, identity):
  out = str(tmp_path / "lora")
  first = export_identity(identity, "diffusers", out)
  before = open(first[0], "rb").read()
  other = _make_identity(tiny_torch_sd, tiny_torch_dir, seed=1)
  with pytest.raises(ExportError, match="exists; pass --overwrite"):
    export_identity(other, "diffusers", out)
  assert open(first[0], "rb").read() == before
  assert export_identity(other, "diffusers", out, overwrite=True) == first
  assert open(first[0], "rb").read() != before
  assert os.listdir(out) == [peft.WEIGHTS_NAME]  # no temp files left
  assert os.stat(first[0]).st_mode & 0o777 == 0o666 & ~_umask()

  merged = str(tmp_path / "merged")
  export_identity(identity, "merged", merged)
  stamp = os.stat(os.path.join(merged, "model_index.json")).st_mtime_ns
  with pytest.raises(ExportError, match="not empty; pass --overwrite"):
    export_identity(other, "merged", merged)
  assert os.stat(os.path.join(merged, "model_index.json")).st_mtime_ns == stamp
  export_identity(other, "merged", merged, overwrite=True)
  # the old pipeline and temp dirs are gone
  assert sorted(os.listdir(tmp_path)) == [
    "lora",
    "merged",
  ]
  unrelated = tmp_path / "unrelated"
  unrelated.mkdir()
  (unrelated / "notes.txt").write_text("mine")
  with pytest.raises(ExportError, match="not a pipeline directory"):
    export_identity(identity, "merged", str(unrelated), overwrite=True)
  assert (unrelated / "notes.txt").read_text() == "mine"


def _umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def test_failed_write_leaves_nothing(tmp_path, identity, monkeypatch):
  from hdb_jax.models import pytorch_export

  def fail(sd, root, params, out_dir):
    os.makedirs(os.path.join(out_dir, "unet"))
    raise OSError("disk full")

  monkeypatch.setattr(pytorch_export, "save_pytorch_pipeline", fail)
  with pytest.raises(OSError, match="disk full"):
    export_identity(identity, "merged", str(tmp_path / "merged"))
  assert not os.listdir(tmp_path)

  def fail_file(tensors, path, metadata=None):
    with open(path, "wb") as f:
      f.write(b"partial")
    raise OSError("disk full")

  monkeypatch.setattr("hdb_jax.export.api.save_file", fail_file)
  with pytest.raises(OSError, match="disk full"):
    export_identity(identity, "kohya", str(tmp_path / "kohya"))
  assert not os.listdir(tmp_path / "kohya")


def test_cli_exports_without_torch_and_refuses_to_overwrite(tmp_path, identity_path):
  """python -m hdb_jax.export in a subprocess where `import torch` fails: the LoRA formats need no
  torch."""
  blocker = tmp_path / "no_torch"
  blocker.mkdir()
  (blocker / "torch.py").write_text("raise ImportError('torch is blocked in this test')\n")
  env = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")])),
  }
  out = tmp_path / "out"
  command = [
    sys.executable,
    "-m",
    "hdb_jax.export",
    f"--identity={identity_path}",
    "--format=kohya",
    f"--out={out}",
  ]
  # pylint: disable=unnecessary-lambda-assignment
  run = lambda args: subprocess.run(
    args, env=env, capture_output=True, text=True, timeout=120, check=False
  )
  first = run(command)
  assert first.returncode == 0, first.stderr
  assert first.stdout.strip() == str(out / "me_kohya.safetensors")
  again = run(command)
  assert again.returncode != 0
  # One line says what went wrong (jax may log its backend probe before it).
  error_lines = [line for line in again.stderr.splitlines() if "error" in line.lower()]
  assert (
    error_lines
    == again.stderr.strip().splitlines()[-1:]
    == [
      f"error: {out / 'me_kohya.safetensors'} exists; pass --overwrite (overwrite=True) to replace "
      "it"
    ]
  )
  merged = run([*command[:4], "--format=merged", f"--out={tmp_path / 'merged'}"])
  assert merged.returncode != 0 and "needs PyTorch" in merged.stderr
  usage = run([sys.executable, "-m", "hdb_jax.export", "--help"])
  for text in (
    "--identity=ID.safetensors",
    "--format",
    "diffusers",
    "kohya",
    "merged",
    "--pretrained",
    "--overwrite",
  ):
    assert text in usage.stdout


@pytest.mark.parametrize(
  "sampler, scheduler_class", [("ddim", "DDIMScheduler"), ("dpm", "DPMSolverMultistepScheduler")]
)
def test_sampling_equals_the_diffusers_pipeline_with_the_exported_lora(
  tiny_torch_sd, tiny_torch_dir, identity, exports, sampler, scheduler_class
):
  """Our generate() and StableDiffusionPipeline, given the same latents, prompt, steps and guidance,
  with the identity (ours) and its exported diffusers LoRA (theirs, load_lora_weights), draw the
  same images.

  Both sides are compared as 8-bit values. Tolerance: one 8-bit step, on a few pixels. The UNets
  agree to ~2.5e-5 per call; guidance (x7.5) and the sampler's 1/sqrt(ᾱ_t) at high noise amplify
  that over 10 steps to well under half a step, so rounding can differ by one step where a value
  sits near a rounding boundary (measured: max 1/255, mean 8e-7 (DDIM) / 5e-7 (DPM-Solver++)). The
  identity alone moves the images by 0.10 on average (checked below), as would a wrong schedule,
  spacing, final step, guidance or LoRA scale."""
  import diffusers  # pylint: disable=import-outside-toplevel

  from hdb_jax.diffusion.generation import generate
  from hdb_jax.diffusion.sampling import SamplingConfig

  steps, guidance, prompt = 10, 7.5, "a photo of {token} face"
  latents = np.random.default_rng(11).standard_normal((2, 4, 8, 8)).astype(np.float32)
  config = SamplingConfig(steps=steps, guidance=guidance, sampler=sampler)
  ours = (
    generate(tiny_torch_sd, [identity], [prompt], 2, config, latents=latents)[0, 0].astype(
      np.float64
    )
    / 255
  )

  pipe = _pipeline(tiny_torch_dir)
  pipe.scheduler = getattr(diffusers, scheduler_class).from_config(pipe.scheduler.config)
  pipe.load_lora_weights(exports["diffusers"])
  pipe.set_progress_bar_config(disable=True)
  text = prompt.replace("{token}", identity.meta.token)
  run = lambda p: p(
    text,
    num_inference_steps=steps,
    guidance_scale=guidance,
    num_images_per_prompt=2,  # noqa: E731
    latents=torch.from_numpy(latents),
    output_type="np",
  ).images.astype(np.float64)
  theirs = np.round(run(pipe) * 255) / 255  # ours are uint8 PNG values
  assert _max_diff(ours, theirs) <= 1 / 255 + 1e-9, _max_diff(ours, theirs)
  assert np.mean(np.abs(ours - theirs)) < 0.05 / 255
  pipe.unload_lora_weights()
  without_identity = run(pipe)
  assert np.mean(np.abs(without_identity - theirs)) > 0.02  # the identity matters at this tolerance


def test_compact_relaxation_is_one_lidb_and_exports_exactly(
  tiny_torch_sd, tiny_torch_dir, identity, tmp_path, probe, flax_outputs
):
  """relaxation='lidb': r' = 4 extra LiDB ranks on top of the prediction make ONE LiDB of rank 5.

  Its first rank is the prediction bit for bit, the 4 new ranks were trained, it holds
  (1 + r')(a + b) numbers per layer (no LoRA), and ΔW = ΔW(prediction) + ΔW(new ranks). Exported
  as a diffusers LoRA and loaded by PyTorch diffusers, every module's scaling * B A equals the
  identity's ΔWᵀ (float64 products of the same fp32 factors: only summation order differs, 1e-12),
  and the UNet computes what Flax computes with the identity merged (UNET_TOL, see above).
  """
  compact = _personalized(tiny_torch_sd, tiny_torch_dir, "lidb")
  predicted = _make_identity(tiny_torch_sd, tiny_torch_dir).lidb
  assert compact.lora is None and compact.meta.lora_rank == 0 and compact.meta.lidb.rank == 5
  layers = compact.meta.layer_specs()
  assert sum(v.size for p in compact.lidb.values() for v in p.values()) == adapters.lidb_size(
    layers, compact.meta.lidb
  )
  for path, part in compact.lidb.items():
    np.testing.assert_array_equal(part["a_train"][:, :1], np.asarray(predicted[path]["a_train"]))
    np.testing.assert_array_equal(part["b_train"][:1], np.asarray(predicted[path]["b_train"]))
  assert max(np.abs(p["b_train"][1:]).max() for p in compact.lidb.values()) > 1e-3  # trained
  aux = adapters.aux_bases(layers, compact.meta.lidb)
  split = [
    {
      p: {k: v[..., sl] if k == "a_train" else v[sl] for k, v in d.items()}
      for p, d in compact.lidb.items()
    }
    for sl in (slice(0, 1), slice(1, 5))
  ]
  parts = [adapters.delta_weights(adapters.lidb_factors(s, aux)) for s in split]
  for path, delta in compact.delta_weights().items():
    layer = path[: -len("/kernel")]
    np.testing.assert_allclose(delta, parts[0][layer] + parts[1][layer], rtol=0, atol=1e-6)
  # Smaller than the LoRA relaxation's identity at the same r', by the float32 bytes of the
  # numbers it does not hold (the JSON headers differ by at most a few KB). On this tiny model's
  # narrow layers the gap is small; on SD1.5 (n, m up to 1280) it is 11x (144,000 vs 1,570,176).
  lora_numbers = sum(
    v.size for part in (identity.lidb, identity.lora) for p in part.values() for v in p.values()
  )
  compact_numbers = adapters.lidb_size(layers, compact.meta.lidb)
  sizes = {}
  for name, ident in (("compact", compact), ("lora", identity)):
    path = str(tmp_path / f"{name}.safetensors")
    identity_lib.save(path, ident)
    sizes[name] = os.path.getsize(path)
  saved = 4 * (lora_numbers - compact_numbers)
  assert saved > 0 and abs(sizes["lora"] - sizes["compact"] - saved) < 4096, (sizes, saved)
  out = str(tmp_path / "diffusers")
  export_identity(str(tmp_path / "compact.safetensors"), "diffusers", out)
  pipe = _pipeline(tiny_torch_dir)
  pipe.load_lora_weights(out)
  deltas = {
    names.pytorch_module_name(p[: -len("/kernel")]): d for p, d in compact.delta_weights().items()
  }
  checked = 0
  for model in ("unet", "text_encoder"):
    for name, module in getattr(pipe, model).named_modules():
      if not hasattr(module, "lora_A"):
        continue
      (adapter,) = module.lora_A.keys()
      down = module.lora_A[adapter].weight.detach().double()
      up = module.lora_B[adapter].weight.detach().double()
      torch_delta = (module.scaling[adapter] * up @ down).numpy()  # [m, n]
      flax_delta = deltas[(model, name)]
      np.testing.assert_allclose(torch_delta, np.float64(flax_delta).T, rtol=0, atol=1e-6)
      checked += 1
  assert checked == len(deltas) > 0
  merged = adapters.merge(tiny_torch_sd.params, compact.factors())
  flax_unet = np.asarray(
    models.unet_apply(
      tiny_torch_sd, merged["unet"], probe["latents"], probe["timesteps"], probe["embeddings"]
    )
  )
  torch_unet, _ = _torch_outputs(pipe.unet, pipe.text_encoder, probe)
  assert _max_diff(torch_unet, flax_unet) < UNET_TOL
  assert _max_diff(flax_unet, flax_outputs["base"][0]) > EFFECT_OVER_TOL * UNET_TOL
