"""A base model's identity without its weights: directory, config fingerprint, parameter shapes.

For checking that an adapter fits a model (e.g. before exporting a LoRA for it) without reading
gigabytes of weights. Agrees with `StableDiffusion.fingerprint()` and the loaded parameter shapes.
"""

import dataclasses
import os
from typing import Any

from hdb_jax.models.loading import ModelLoadError, Params, abstract_params, config_fingerprint
from hdb_jax.models.pretrained import resolve_model_dir
from hdb_jax.runtime.quiet import silence_flax_deprecations

silence_flax_deprecations()

# pylint: disable=wrong-import-position
from diffusers import FlaxUNet2DConditionModel
from transformers import CLIPTextConfig


@dataclasses.dataclass(frozen=True)
class ModelDescription:
  """root: local diffusers-format directory; params: {'unet', 'text_encoder'} ShapeDtypeStruct
  trees."""

  root: str
  fingerprint: str
  params: dict[str, Params]


def _configs(root: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """The Flax UNet's and CLIP text encoder's configs as the loader builds them."""
  for name in ("unet", "text_encoder"):
    if not os.path.isfile(os.path.join(root, name, "config.json")):
      raise ModelLoadError(
        f"{root!r} has no {name}/config.json: not a diffusers-format Stable Diffusion directory"
      )
  unet = FlaxUNet2DConditionModel.from_config(
    FlaxUNet2DConditionModel.load_config(os.path.join(root, "unet"))
  )
  text_config = CLIPTextConfig.from_pretrained(os.path.join(root, "text_encoder"))
  return dict(unet.config), text_config.to_dict()


def describe_model(pretrained: str, revision: str | None = None) -> ModelDescription:
  """Reads only the configs of `pretrained` (as `load_model` names it); no weights are read."""
  root = resolve_model_dir(pretrained, revision)
  unet_config, text_config = _configs(root)
  return ModelDescription(
    root=root,
    fingerprint=config_fingerprint(unet_config, text_config),
    params=abstract_params(unet_config, text_config),
  )
