"""Flax Stable Diffusion parameters -> a diffusers PyTorch pipeline directory (the `torch` extra).

Each PyTorch tensor is taken from the Flax leaf that the loader's own PyTorch->Flax conversion maps
it to: running that conversion on an array of element indices gives the permutation (transpose),
whose inverse is exact. Every Flax leaf must be used exactly once, so a naming drift is an error,
not a silently random weight. Importing this module imports torch.
"""

import json
import os
import shutil
from typing import Any, Callable

import numpy as np
import torch
from flax import traverse_util
from safetensors.numpy import save_file

from hdb_jax.models.loading import ModelLoadError, Params, StableDiffusion
from hdb_jax.runtime.quiet import silence_flax_deprecations

silence_flax_deprecations()

# pylint: disable=wrong-import-position
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.modeling_flax_pytorch_utils import rename_key, rename_key_and_reshape_tensor
from transformers import CLIPTextConfig, CLIPTextModel
from transformers.modeling_flax_pytorch_utils import (
  rename_key_and_reshape_tensor as transformers_rename_key_and_reshape_tensor,
)

ToFlax = Callable[[str, np.ndarray], tuple[tuple[str, ...], np.ndarray]]
WRITTEN_COMPONENTS = ("unet", "text_encoder", "vae", "tokenizer", "scheduler")
DEFAULT_CLASSES = {
  "unet": ["diffusers", "UNet2DConditionModel"],
  "vae": ["diffusers", "AutoencoderKL"],
  "text_encoder": ["transformers", "CLIPTextModel"],
  "tokenizer": ["transformers", "CLIPTokenizer"],
  "scheduler": ["diffusers", "DDPMScheduler"],
}
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
TRANSFORMERS_WEIGHTS = "model.safetensors"


def flax_to_pytorch_state_dict(
  flax_params: Params, pytorch_shapes: dict[str, tuple[int, ...]], to_flax: ToFlax
) -> dict[str, np.ndarray]:
  """PyTorch state dict (numpy) from Flax params, inverting `to_flax(pt_key, pt_array) -> (flax_key,
  array)`.

  Raises ModelLoadError for a PyTorch tensor without a Flax leaf, a shape mismatch, or an unused
  leaf.
  """
  flat = traverse_util.flatten_dict(flax_params)
  state, used = {}, set()
  for pt_key, shape in pytorch_shapes.items():
    size = int(np.prod(shape, dtype=np.int64))
    flax_key, index = to_flax(pt_key, np.arange(size, dtype=np.int64).reshape(shape))
    if flax_key not in flat:
      raise ModelLoadError(
        f"PyTorch weight {pt_key!r} has no Flax counterpart ({'/'.join(flax_key)})"
      )
    value = np.asarray(flat[flax_key])
    if value.shape != index.shape:
      raise ModelLoadError(
        f"Flax weight {'/'.join(flax_key)} has shape {value.shape}, PyTorch's "
        f"{pt_key!r} needs {index.shape}"
      )
    tensor = np.empty(size, value.dtype)
    tensor[index.reshape(-1)] = value.reshape(-1)
    state[pt_key] = tensor.reshape(shape)
    used.add(flax_key)
  unused = sorted("/".join(k) for k in set(flat) - used)
  if unused:
    raise ModelLoadError(
      f"{len(unused)} Flax weights have no PyTorch counterpart, e.g. {unused[0]}"
    )
  return state


def _meta_shapes(
  build: Callable[[], torch.nn.Module],
) -> tuple[torch.nn.Module, dict[str, tuple[int, ...]]]:
  """Builds a PyTorch model on the meta device (no memory, no init cost); its state-dict shapes."""
  with torch.device("meta"):
    model = build()
  return model, {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _diffusers_to_flax(flax_params: Params) -> ToFlax:
  flat = traverse_util.flatten_dict(flax_params)
  return lambda key, array: rename_key_and_reshape_tensor(
    tuple(rename_key(key).split(".")), array, flat
  )


def _transformers_to_flax(flax_params: Params, prefix: str) -> ToFlax:
  flat = traverse_util.flatten_dict(flax_params)
  return lambda key, array: transformers_rename_key_and_reshape_tensor(
    tuple(key.split(".")), array, flat, prefix
  )


def _save_weights(state: dict[str, np.ndarray], path: str, dtype: Any = np.float32) -> None:
  save_file(
    {k: np.ascontiguousarray(v, dtype) for k, v in state.items()},
    path,
    metadata={"format": "pt"},
  )


def save_diffusers_model(
  cls: Any, root: str, name: str, flax_params: Params, out_dir: str, dtype: Any = np.float32
) -> list[str]:
  """root/name's config + `flax_params` -> out_dir/name/{config.json,
  diffusion_pytorch_model.safetensors}."""
  config = cls.load_config(os.path.join(root, name))
  model, shapes = _meta_shapes(lambda: cls.from_config(config))
  state = flax_to_pytorch_state_dict(flax_params, shapes, _diffusers_to_flax(flax_params))
  directory = os.path.join(out_dir, name)
  os.makedirs(directory, exist_ok=True)
  model.save_config(directory)
  _save_weights(state, os.path.join(directory, DIFFUSERS_WEIGHTS), dtype)
  return [os.path.join(directory, "config.json"), os.path.join(directory, DIFFUSERS_WEIGHTS)]


def save_text_encoder(
  sd: StableDiffusion, root: str, flax_params: Params, out_dir: str, dtype: Any = np.float32
) -> list[str]:
  """root/text_encoder's config + `flax_params` -> out_dir/text_encoder/{config.json,
  model.safetensors}."""
  config = CLIPTextConfig.from_pretrained(os.path.join(root, "text_encoder"))
  config.architectures = ["CLIPTextModel"]
  _, shapes = _meta_shapes(lambda: CLIPTextModel(config))
  to_flax = _transformers_to_flax(flax_params, sd.text_encoder.base_model_prefix)
  state = flax_to_pytorch_state_dict(flax_params, shapes, to_flax)
  directory = os.path.join(out_dir, "text_encoder")
  config.save_pretrained(directory)
  _save_weights(state, os.path.join(directory, TRANSFORMERS_WEIGHTS), dtype)
  return [os.path.join(directory, "config.json"), os.path.join(directory, TRANSFORMERS_WEIGHTS)]


def _pytorch_class(name: str) -> str:
  return name[len("Flax") :] if name.startswith("Flax") else name


def _copy_config_dir(root: str, name: str, out_dir: str) -> list[str]:
  """Copies root/name (tokenizer, scheduler: configs only), naming PyTorch classes in its JSON."""
  shutil.copytree(os.path.join(root, name), os.path.join(out_dir, name))
  written = []
  for dirpath, _, files in os.walk(os.path.join(out_dir, name)):
    for file in files:
      path = os.path.join(dirpath, file)
      written.append(path)
      if file.endswith("_config.json"):
        with open(path, encoding="utf-8") as f:
          config = json.load(f)
        if isinstance(config.get("_class_name"), str):
          config["_class_name"] = _pytorch_class(config["_class_name"])
          with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, sort_keys=True)
  return sorted(written)


def _has_flax_weights_only(directory: str) -> bool:
  files = os.listdir(directory)
  return any(f.endswith(".msgpack") for f in files) and not any(
    f.endswith(".safetensors") for f in files
  )


def _model_index(root: str, out_dir: str) -> tuple[dict[str, Any], list[str]]:
  """model_index.json for the exported pipeline (PyTorch class names). Other components of the base
  (safety checker, feature extractor) are copied when PyTorch can load them, else set to [null,
  null]."""
  path = os.path.join(root, "model_index.json")
  index: dict[str, Any] = {"_class_name": "StableDiffusionPipeline"}
  if os.path.isfile(path):
    with open(path, encoding="utf-8") as f:
      index = json.load(f)
  index["_class_name"] = _pytorch_class(index.get("_class_name", "StableDiffusionPipeline"))
  for name, entry in DEFAULT_CLASSES.items():
    index.setdefault(name, entry)
  copied = []
  for name, entry in index.items():
    if (
      name.startswith("_") or not (isinstance(entry, list) and len(entry) == 2) or entry[1] is None
    ):
      continue
    if name not in WRITTEN_COMPONENTS:
      source = os.path.join(root, name)
      if not os.path.isdir(source) or _has_flax_weights_only(source):
        index[name] = [None, None]
        continue
      shutil.copytree(source, os.path.join(out_dir, name))
      copied += [
        os.path.join(d, f) for d, _, files in os.walk(os.path.join(out_dir, name)) for f in files
      ]
    index[name] = [entry[0], _pytorch_class(entry[1])]
  return index, copied


def save_pytorch_pipeline(
  sd: StableDiffusion,
  root: str,
  params: dict[str, Params],
  out_dir: str,
  dtype: Any = np.float32,
) -> list[str]:
  """Writes a diffusers PyTorch (safetensors) Stable Diffusion pipeline to out_dir; returns the
  files.

  sd, root: the loaded base model and its directory (configs, tokenizer, scheduler are taken from
  it); params: {'unet', 'text_encoder', 'vae'} Flax trees to write (e.g. with an identity merged
  in); dtype: the stored tensors' (np.float16 for a small release). Loadable with
  StableDiffusionPipeline / UNet2DConditionModel / CLIPTextModel.from_pretrained.
  """
  os.makedirs(out_dir, exist_ok=True)
  written = save_diffusers_model(UNet2DConditionModel, root, "unet", params["unet"], out_dir, dtype)
  written += save_text_encoder(sd, root, params["text_encoder"], out_dir, dtype)
  written += save_diffusers_model(AutoencoderKL, root, "vae", params["vae"], out_dir, dtype)
  for name in ("tokenizer", "scheduler"):
    written += _copy_config_dir(root, name, out_dir)
  index, copied = _model_index(root, out_dir)
  with open(os.path.join(out_dir, "model_index.json"), "w", encoding="utf-8") as f:
    json.dump(index, f, indent=2)
  return sorted(written + copied + [os.path.join(out_dir, "model_index.json")])
