"""PyTorch diffusers/transformers counterparts of our models (the `torch` extra): for interchange
tests, export checks and benchmarks. Importing this module imports torch."""

import os

import torch

from hdb_jax.models import configs
from hdb_jax.models.tiny import tiny_text_config, write_model_index
from hdb_jax.models.tokenizer import write_tiny_tokenizer
from hdb_jax.runtime.quiet import silence_flax_deprecations

silence_flax_deprecations()

# pylint: disable=wrong-import-position
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, ViTConfig, ViTModel


def create_tiny_pytorch_stable_diffusion(
  directory: str, seed: int = 0, scheduler_config: dict | None = None
) -> str:
  """Writes a tiny random Stable Diffusion in diffusers PyTorch format (safetensors) to `directory`.

  Same configs as the Flax tiny family; torch's own initialisers (seeded). Every component, the
  scheduler too (`scheduler_config`, default SD1.5's schedule), is written by
  diffusers/transformers' own `save_pretrained`. Returns the directory.
  """
  if os.path.exists(os.path.join(directory, "model_index.json")):
    return directory
  os.makedirs(directory, exist_ok=True)
  torch.manual_seed(seed)
  tokenizer = write_tiny_tokenizer(os.path.join(directory, "tokenizer"))
  UNet2DConditionModel(**configs.TINY_UNET).save_pretrained(os.path.join(directory, "unet"))
  AutoencoderKL(**configs.TINY_VAE).save_pretrained(os.path.join(directory, "vae"))
  CLIPTextModel(CLIPTextConfig(**tiny_text_config(len(tokenizer)))).save_pretrained(
    os.path.join(directory, "text_encoder")
  )
  schedule = {
    k: v for k, v in (scheduler_config or configs.SD15_SCHEDULER).items() if k != "set_alpha_to_one"
  }
  DDPMScheduler(**schedule).save_pretrained(os.path.join(directory, "scheduler"))
  write_model_index(directory)
  return directory


def create_tiny_pytorch_dino(directory: str, seed: int = 0) -> ViTModel:
  """A tiny random DINO-style ViT (no pooler) saved as PyTorch safetensors, without a preprocessor
  config (the loader's ImageNet defaults apply); returns the model."""
  from hdb_jax.models.configs import TINY_VISION

  torch.manual_seed(seed)
  model = ViTModel(ViTConfig(**TINY_VISION), add_pooling_layer=False).eval()
  model.save_pretrained(directory)
  return model


def load_pytorch_unet(directory: str) -> UNet2DConditionModel:
  return UNet2DConditionModel.from_pretrained(os.path.join(directory, "unet")).eval()


def load_pytorch_text_encoder(directory: str) -> CLIPTextModel:
  return CLIPTextModel.from_pretrained(os.path.join(directory, "text_encoder")).eval()
