"""Configs-only directories of the paper's models, for compiling them ahead of time on a machine
that cannot reach the hub: SD1.5 (diffusers layout, no weights) and ViT-H/14.

    paths = write_architectures("/tmp/arch")   # {'sd15': '/tmp/arch/sd15', 'vit-h14': ...}
    python -m hdb_jax.aot --config=configs/hyper.py --config.pretrained=/tmp/arch/sd15 \\
        --config.encoder.pretrained=/tmp/arch/vit-h14 --topology=v5e:2x4

The tokenizer is the tiny one (the same 77-token length); the text encoder keeps SD1.5's
49,408-entry
vocabulary, so every parameter shape is SD1.5's.
"""

import os

from transformers import CLIPTextConfig, ViTConfig

from hdb_jax.models import configs
from hdb_jax.models.tiny import write_configs


def write_architectures(directory: str) -> dict[str, str]:
  """Writes DIRECTORY/sd15 and DIRECTORY/vit-h14 (configs only); returns name -> path."""
  sd15, vit = os.path.join(directory, "sd15"), os.path.join(directory, "vit-h14")
  write_configs(sd15, configs.SD15_UNET, configs.SD15_VAE, configs.SD15_TEXT_ENCODER)
  CLIPTextConfig(**configs.SD15_TEXT_ENCODER).save_pretrained(os.path.join(sd15, "text_encoder"))
  ViTConfig(**configs.VIT_H14).save_pretrained(vit)
  return {"sd15": sd15, "vit-h14": vit}
