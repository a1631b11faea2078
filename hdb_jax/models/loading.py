"""Loads a Stable Diffusion model (UNet, VAE, CLIP text encoder, tokenizer, noise schedule).

The one loading path for every model, real or tiny: a hub id is first resolved to a local snapshot,
then each component is read from its diffusers-format subfolder, either as Flax weights (msgpack) or
converted from PyTorch `.safetensors`. Pickled PyTorch weights (`.bin`) are never read.
"""

import dataclasses
import hashlib
import json
import os
import types
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from safetensors.numpy import load_file as load_safetensors_numpy

from hdb_jax.errors import UserError
from hdb_jax.models.attention import check_attention
from hdb_jax.models.schedulers import training_scheduler
from hdb_jax.runtime.quiet import silence_flax_deprecations

silence_flax_deprecations()

# pylint: disable=g-import-not-at-top,wrong-import-position
from diffusers import FlaxAutoencoderKL, FlaxDDPMScheduler, FlaxUNet2DConditionModel

# noqa: F401 (for functional.py)
from diffusers.models.modeling_flax_pytorch_utils import rename_key, rename_key_and_reshape_tensor
from transformers import CLIPTextConfig, CLIPTokenizer, FlaxCLIPTextModel
from transformers.modeling_flax_pytorch_utils import (
  convert_pytorch_state_dict_to_flax as convert_transformers_pt_to_flax,
)

Params = Any

FLAX_DIFFUSERS_WEIGHTS = "diffusion_flax_model.msgpack"
PT_DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
FLAX_TRANSFORMERS_WEIGHTS = "flax_model.msgpack"
PT_TRANSFORMERS_WEIGHTS = "model.safetensors"
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


class ModelLoadError(UserError, RuntimeError):
  """A model could not be loaded; the message says what to do about it."""


@dataclasses.dataclass(frozen=True)
class StableDiffusion:
  """The modules (stateless) and parameters of one Stable Diffusion model.

  `params` holds 'unet', 'vae' and 'text_encoder' parameter pytrees; the modules hold no weights.
  """

  unet: FlaxUNet2DConditionModel
  vae: FlaxAutoencoderKL
  text_encoder: FlaxCLIPTextModel
  tokenizer: CLIPTokenizer
  scheduler: FlaxDDPMScheduler
  scheduler_state: Any
  params: dict[str, Params]
  source: str
  # scheduler_config.json as read
  scheduler_config: dict[str, Any] = dataclasses.field(default_factory=dict)
  # the UNet's attention kernel (models.attention.ATTENTION_KINDS; set with with_attention)
  attention: str = "einsum"
  # the world renderer version a world model was trained on (its card.json's 'world_version');
  # None for every other model (and world v1, which did not record one)
  world_version: int | None = None

  @property
  def vae_scaling_factor(self) -> float:
    return float(self.vae.config.scaling_factor)

  @property
  def resolution(self) -> int:
    """Image size in pixels that the UNet's sample size corresponds to."""
    return int(self.unet.config.sample_size) * 2 ** (len(self.vae.config.block_out_channels) - 1)

  def fingerprint(self) -> str:
    """config_fingerprint of the architectures; a world model's also holds its world version, so
    files made for a world model of another version (identities, weights datasets, hypernetworks)
    are refused by it."""
    return config_fingerprint(dict(self.unet.config), self.text_encoder.config.to_dict(),
                              self.world_version)  # fmt: skip


def _architecture(config: dict[str, Any]) -> dict[str, Any]:
  """Drops bookkeeping keys (names, versions, dtypes) so equal architectures compare equal."""
  skip = {"transformers_version", "torch_dtype", "dtype", "architectures", "name_or_path"}
  return {
    k: v
    for k, v in sorted(config.items())
    if not k.startswith("_") and k not in skip and not isinstance(v, dict)
  }


def unet_architecture(unet_config: dict[str, Any]) -> dict[str, Any]:
  """The Flax UNet's constructor fields (defaults filled in) for a config: the same for a
  config.json saved from PyTorch (with PyTorch-only keys) or from Flax."""
  module = FlaxUNet2DConditionModel.from_config(dict(unet_config))
  return {
    f.name: getattr(module, f.name)
    for f in dataclasses.fields(module)
    if f.name not in ("parent", "name", "dtype", "use_memory_efficient_attention", "split_head_dim")
  }


def config_fingerprint(
  unet_config: dict[str, Any], text_config: dict[str, Any], world_version: int | None = None
) -> str:
  """A short hash of the UNet and text-encoder architectures (and a world model's world version),
  stored in identity files."""
  fields = {
    "unet": _architecture(unet_architecture(unet_config)),
    "text": _architecture(text_config),
  }
  if world_version is not None:
    fields["world_version"] = world_version
  blob = json.dumps(fields, sort_keys=True, default=list)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resolve_pretrained(pretrained: str, revision: str | None = None, weights: bool = True) -> str:
  """Returns a local directory for `pretrained`: itself if it is a directory, else a hub snapshot
  (weights=False: of its configs, tokenizer and scheduler only).

  Raises ModelLoadError for a path that does not exist or a hub id that cannot be fetched (offline,
  unknown, gated), naming what to do.
  """
  expanded = os.path.expanduser(pretrained)
  if os.path.isdir(expanded):
    return expanded
  if (
    pretrained.startswith((".", "/", "~"))
    or os.sep + os.sep in pretrained
    or pretrained.count("/") != 1
  ):
    raise ModelLoadError(
      f"model directory not found: {pretrained!r} (expected a local diffusers-format "
      "directory or a hub id like 'stable-diffusion-v1-5/stable-diffusion-v1-5')"
    )
  import huggingface_hub  # pylint: disable=import-outside-toplevel

  try:
    listed = huggingface_hub.list_repo_files(pretrained, revision=revision)
    files = files_to_download(listed, weights)
    return huggingface_hub.snapshot_download(pretrained, revision=revision, allow_patterns=files)
  except Exception as e:  # the hub raises many types: offline, 404, gated, connection refused
    try:  # offline with the model in the local hub cache
      return huggingface_hub.snapshot_download(
        pretrained,
        revision=revision,
        local_files_only=True,
        allow_patterns=files_to_download(weights=weights),
      )
    except Exception:  # pylint: disable=broad-except
      pass
    raise ModelLoadError(
      f"could not fetch {pretrained!r} from the Hugging Face hub ({type(e).__name__}: "
      f"{str(e).splitlines()[0] if str(e) else ''}). If this machine is offline, download the "
      "model "
      "elsewhere and pass its local directory instead."
    ) from e


def files_to_download(repo_files: Iterable[str] | None = None, weights: bool = True) -> list[str]:
  """The files of a hub repository that the loader reads: model_index.json, each model's config and
  ONE weights file (Flax msgpack where the repository has it, else PyTorch safetensors), the
  tokenizer and the scheduler config. Never fp16/EMA variants, root single-file checkpoints or the
  safety checker (about 15 GB more for SD1.5). Without `repo_files`, every candidate name (for the
  local cache). weights=False: the configs, tokenizer and scheduler alone."""
  weight_files = {
    "unet": (FLAX_DIFFUSERS_WEIGHTS, PT_DIFFUSERS_WEIGHTS),
    "vae": (FLAX_DIFFUSERS_WEIGHTS, PT_DIFFUSERS_WEIGHTS),
    "text_encoder": (FLAX_TRANSFORMERS_WEIGHTS, PT_TRANSFORMERS_WEIGHTS),
  }
  tokenizer = (
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
  )
  present = None if repo_files is None else set(repo_files)
  wanted = ["model_index.json", "scheduler/scheduler_config.json"] + [
    f"tokenizer/{n}" for n in tokenizer
  ]
  for model, (flax_name, pt_name) in weight_files.items():
    wanted.append(f"{model}/config.json")
    if not weights:
      continue
    if present is None:
      wanted += [f"{model}/{flax_name}", f"{model}/{pt_name}"]
    else:
      wanted.append(
        f"{model}/{flax_name}" if f"{model}/{flax_name}" in present else f"{model}/{pt_name}"
      )
  return wanted if present is None else [name for name in wanted if name in present]


def _subfolder(root: str, name: str) -> str:
  path = os.path.join(root, name)
  if not os.path.isdir(path):
    raise ModelLoadError(
      f"{root!r} has no '{name}/' subfolder: not a diffusers-format Stable "
      f"Diffusion directory (expected subfolders {', '.join(COMPONENTS)})"
    )
  return path


def read_json(path: str) -> dict[str, Any]:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError as e:
    raise ModelLoadError(f"missing {path}") from e
  except json.JSONDecodeError as e:
    raise ModelLoadError(f"{path} is not valid JSON: {e}") from e


def _check_class(config: dict[str, Any], path: str, expected: tuple[str, ...]) -> None:
  class_name = config.get("_class_name") or (config.get("architectures") or [None])[0]
  if class_name is not None and class_name.removeprefix("Flax") not in expected:
    raise ModelLoadError(f"{path} describes a {class_name}, expected one of {', '.join(expected)}")


def _refuse_pickle_only(directory: str, weights: tuple[str, ...]) -> None:
  present = set(os.listdir(directory))
  if not present.intersection(weights):
    pickled = sorted(n for n in present if n.endswith((".bin", ".pt", ".ckpt")))
    hint = (
      (
        f" It holds only pickled weights ({', '.join(pickled)}), which this project never loads: "
        "convert them to safetensors first (e.g. diffusers' save_pretrained)."
      )
      if pickled
      else ""
    )
    raise ModelLoadError(f"no weights in {directory} (looked for {', '.join(weights)}).{hint}")


def convert_pytorch_state_dict(pt_state: dict[str, np.ndarray], abstract_params: Params) -> Params:
  """Maps a diffusers PyTorch state dict (numpy arrays) onto a Flax parameter tree.

  `abstract_params` (from jax.eval_shape) gives the expected names and shapes; a missing, unexpected
  or misshaped tensor is a ModelLoadError.
  """
  expected = traverse_util.flatten_dict(abstract_params)
  converted = {}
  for pt_key, tensor in pt_state.items():
    flax_key, value = rename_key_and_reshape_tensor(
      tuple(rename_key(pt_key).split(".")), tensor, expected
    )
    if flax_key not in expected:
      raise ModelLoadError(f"unexpected weight {pt_key!r} for this model config")
    if tuple(value.shape) != tuple(expected[flax_key].shape):
      raise ModelLoadError(
        f"weight {pt_key!r} has shape {tuple(value.shape)}, the config expects "
        f"{tuple(expected[flax_key].shape)}"
      )
    converted[flax_key] = jnp.asarray(value, dtype=expected[flax_key].dtype)
  missing = sorted("/".join(k) for k in expected if k not in converted)
  if missing:
    raise ModelLoadError(f"{len(missing)} weights missing from the checkpoint, e.g. {missing[0]}")
  return traverse_util.unflatten_dict(converted)


def _load_diffusers_module(
  root: str, name: str, cls: Any, expected_classes: tuple[str, ...], dtype: jnp.dtype
) -> tuple[Any, Params]:
  """Loads a diffusers Flax model from root/name in Flax or PyTorch-safetensors format."""
  directory = _subfolder(root, name)
  config_path = os.path.join(directory, "config.json")
  _check_class(read_json(config_path), config_path, expected_classes)
  _refuse_pickle_only(directory, (FLAX_DIFFUSERS_WEIGHTS, PT_DIFFUSERS_WEIGHTS))
  if os.path.exists(os.path.join(directory, FLAX_DIFFUSERS_WEIGHTS)):
    return cls.from_pretrained(directory, dtype=dtype)
  module = cls.from_config(cls.load_config(directory), dtype=dtype)
  abstract = jax.eval_shape(module.init_weights, jax.random.key(0))
  pt_state = load_safetensors_numpy(os.path.join(directory, PT_DIFFUSERS_WEIGHTS))
  return module, convert_pytorch_state_dict(pt_state, abstract)


def load_unet(root: str, dtype: jnp.dtype = jnp.float32) -> tuple[FlaxUNet2DConditionModel, Params]:
  """UNet module and params from root/unet."""
  return _load_diffusers_module(
    root, "unet", FlaxUNet2DConditionModel, ("UNet2DConditionModel",), dtype
  )


def load_vae(root: str, dtype: jnp.dtype = jnp.float32) -> tuple[FlaxAutoencoderKL, Params]:
  """VAE module and params from root/vae."""
  return _load_diffusers_module(root, "vae", FlaxAutoencoderKL, ("AutoencoderKL",), dtype)


def load_text_encoder(
  root: str, dtype: jnp.dtype = jnp.float32
) -> tuple[FlaxCLIPTextModel, Params]:
  """CLIP text encoder and params from root/text_encoder (Flax msgpack or PyTorch safetensors)."""
  directory = _subfolder(root, "text_encoder")
  config_path = os.path.join(directory, "config.json")
  _check_class(
    read_json(config_path), config_path, ("CLIPTextModel", "CLIPTextModelWithProjection")
  )
  _refuse_pickle_only(directory, (FLAX_TRANSFORMERS_WEIGHTS, PT_TRANSFORMERS_WEIGHTS))
  if os.path.exists(os.path.join(directory, FLAX_TRANSFORMERS_WEIGHTS)):
    return FlaxCLIPTextModel.from_pretrained(directory, dtype=dtype, _do_init=False)
  model = FlaxCLIPTextModel(CLIPTextConfig.from_pretrained(directory), dtype=dtype, _do_init=False)
  abstract = jax.eval_shape(lambda rng: model.init_weights(rng, (1, 1)), jax.random.key(0))
  return model, convert_transformers_safetensors(
    directory, abstract, model.base_model_prefix, "text encoder"
  )


def convert_transformers_safetensors(
  directory: str, abstract: Params, base_model_prefix: str, what: str
) -> Params:
  """A transformers model's PyTorch weights (directory/model.safetensors) as the Flax parameter tree
  `abstract` describes, in its dtypes (an fp16 file gives float32 master weights, as the diffusers
  modules' conversion does). (transformers' own from_pt path needs an initialized model.) A missing
  or misshaped weight is a ModelLoadError naming `what`; extra PyTorch tensors (buffers) are
  dropped.
  """
  shim = types.SimpleNamespace(params=abstract, base_model_prefix=base_model_prefix)
  pt_state = load_safetensors_numpy(os.path.join(directory, PT_TRANSFORMERS_WEIGHTS))
  converted = traverse_util.flatten_dict(convert_transformers_pt_to_flax(pt_state, shim))
  expected = traverse_util.flatten_dict(abstract)
  missing = sorted("/".join(k) for k in expected if k not in converted)
  if missing:
    raise ModelLoadError(f"{len(missing)} weights missing from {directory}, e.g. {missing[0]}")
  for key, leaf in expected.items():
    if tuple(converted[key].shape) != tuple(leaf.shape):
      raise ModelLoadError(
        f"{what} weight {'/'.join(key)} has shape {tuple(converted[key].shape)}, "
        f"the config expects {tuple(leaf.shape)}"
      )
  return traverse_util.unflatten_dict(
    {k: jnp.asarray(converted[k], dtype=leaf.dtype) for k, leaf in expected.items()}
  )


def load_transformers_flax(directory: str, cls: Any, what: str, **kwargs) -> tuple[Any, Params]:
  """A transformers Flax model class's (model, params) from a directory of Flax msgpack or PyTorch
  safetensors weights (pickles refused); missing or misshaped weights are a ModelLoadError naming
  `what`."""
  _refuse_pickle_only(directory, (FLAX_TRANSFORMERS_WEIGHTS, PT_TRANSFORMERS_WEIGHTS))
  if os.path.exists(os.path.join(directory, FLAX_TRANSFORMERS_WEIGHTS)):
    model, params = cls.from_pretrained(directory, _do_init=False, **kwargs)
    abstract = jax.eval_shape(
      lambda rng: model.init_weights(rng, model.input_shape), jax.random.key(0)
    )
    missing = sorted(
      set(traverse_util.flatten_dict(abstract)) - set(traverse_util.flatten_dict(params))
    )
    if missing:
      raise ModelLoadError(
        f"{len(missing)} {what} weights missing from {directory}, e.g. {'/'.join(missing[0])}"
      )
    return model, params
  # PyTorch safetensors
  model = cls(cls.config_class.from_pretrained(directory), _do_init=False, **kwargs)
  abstract = jax.eval_shape(
    lambda rng: model.init_weights(rng, model.input_shape), jax.random.key(0)
  )
  return model, convert_transformers_safetensors(directory, abstract, model.base_model_prefix, what)


def load_tokenizer(root: str) -> CLIPTokenizer:
  """CLIP tokenizer from root/tokenizer."""
  directory = _subfolder(root, "tokenizer")
  for name in ("vocab.json", "merges.txt"):
    if not os.path.exists(os.path.join(directory, name)):
      raise ModelLoadError(f"{directory} has no {name}: not a CLIP tokenizer")
  return CLIPTokenizer.from_pretrained(directory)


def load_scheduler(root: str) -> tuple[FlaxDDPMScheduler, Any, dict[str, Any]]:
  """The base model's noise schedule from root/scheduler/scheduler_config.json: (DDPM training
  scheduler, its state, the config as read). See `schedulers.training_scheduler`."""
  path = os.path.join(_subfolder(root, "scheduler"), "scheduler_config.json")
  config = read_json(path)
  try:
    scheduler, state = training_scheduler(config)
  except ValueError as e:
    raise ModelLoadError(f"{path}: {e}") from e
  return scheduler, state, config


def with_vae_scaling_factor(sd: StableDiffusion, factor: float) -> StableDiffusion:
  """The same model with the VAE's latent scaling factor set (SD1.5's is 0.18215: 1 / the std of
  its encoder's latents)."""
  config = {**sd.vae.config, "scaling_factor": float(factor)}
  return dataclasses.replace(sd, vae=FlaxAutoencoderKL.from_config(config, dtype=sd.vae.dtype))


def with_attention(sd: StableDiffusion, kind: str) -> StableDiffusion:
  """The same model with the UNet's attention computed by `kind` (models.attention): same numbers
  up to float rounding, different memory and speed."""
  chunked = check_attention(kind) == "chunked"
  unet = sd.unet.clone(use_memory_efficient_attention=chunked)
  return dataclasses.replace(sd, unet=unet, attention=kind)


def check_text_width(unet: FlaxUNet2DConditionModel, text_encoder: FlaxCLIPTextModel) -> None:
  """The text encoder's width must be the UNet's cross_attention_dim (ModelLoadError)."""
  if text_encoder.config.hidden_size != unet.config.cross_attention_dim:
    raise ModelLoadError(
      f"text encoder width {text_encoder.config.hidden_size} does not match the "
      f"UNet's cross_attention_dim {unet.config.cross_attention_dim}"
    )


def load_stable_diffusion(
  pretrained: str, revision: str | None = None, dtype: jnp.dtype = jnp.float32
) -> StableDiffusion:
  """Loads every component of a Stable Diffusion model from a hub id or a local directory.

  `dtype` is the compute dtype of the modules; parameters stay float32 (master weights).
  """
  root = resolve_pretrained(pretrained, revision)
  unet, unet_params = load_unet(root, dtype)
  vae, vae_params = load_vae(root, dtype)
  text_encoder, text_params = load_text_encoder(root, dtype)
  tokenizer = load_tokenizer(root)
  scheduler, scheduler_state, scheduler_config = load_scheduler(root)
  check_text_width(unet, text_encoder)
  params = {"unet": unet_params, "vae": vae_params, "text_encoder": text_params}
  return StableDiffusion(
    unet=unet,
    vae=vae,
    text_encoder=text_encoder,
    tokenizer=tokenizer,
    scheduler=scheduler,
    scheduler_state=scheduler_state,
    params=params,
    source=pretrained,
    scheduler_config=scheduler_config,
    world_version=recorded_world_version(root),
  )


# the card a world model directory holds (hdb_jax.world.pretrain.history.CARD)
WORLD_CARD = "card.json"


# the format a world model's card.json names (hdb_jax.world.pretrain.release.CARD_FORMAT)
WORLD_CARD_FORMAT = "hdb_jax.world_model"


def recorded_world_version(root: str) -> int | None:
  """The world version a world model's root/card.json records (1 for a world v1 card, which
  recorded none); None for every other model."""
  path = os.path.join(root, WORLD_CARD)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    card = json.load(f)
  if card.get("format") != WORLD_CARD_FORMAT:
    return None
  return int(card.get("world_version", 1))


def abstract_params(unet_config: dict[str, Any], text_config: dict[str, Any]) -> dict[str, Params]:
  """Parameter shapes (jax.ShapeDtypeStruct trees) of a UNet and text encoder, built without
  weights."""
  unet = FlaxUNet2DConditionModel.from_config(unet_config)
  text = FlaxCLIPTextModel(CLIPTextConfig(**text_config), _do_init=False)
  rng = jax.random.key(0)
  return {
    "unet": jax.eval_shape(unet.init_weights, rng),
    "text_encoder": jax.eval_shape(lambda r: text.init_weights(r, (1, 1)), rng),
  }
