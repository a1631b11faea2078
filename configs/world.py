"""The world model: a small Stable Diffusion trained from scratch on world renders and captions.

Variants (`--config=configs/world.py:<variant>`; fields: hdb_jax/config/world.py):

  ''     python -m hdb_jax.world.pretrain --config=configs/world.py --workdir=/tmp/world
         64 px, VAE of factor 4 (16x16x8 latents, 32 channels wide at full resolution) for 2,500
         steps of batch 8, then the UNet with the text encoder trained jointly for 3,750 steps of
         batch 32, on 2 CPU cores (15 min + ~37 min at ~0.6 s/step with nothing else running).
         Resumes where it was killed. Writes /tmp/world/model (diffusers format) and, with torch
         installed, /tmp/world/release (fp16 PyTorch safetensors + MODEL_CARD.md).

         The UNet stage weights its loss by min-SNR-5. The shipped model (world v2; card in
         hdb_jax/assets/world-sd) is one run with --config.unet_stage.steps=8000 (VAE 0.25 h +
         UNet 1.44 h): World-prompt 0.974 at guidance 7.5 (goal 0.93), 0.955 on the attributes
         a prompt names (goal 0.90), World-ID Frechet distance 3.3x the render floor (goal 2x),
         samples keeping 0.50 / 0.84 of renders' Laplacian / gradient energy (v2's first run, a
         VAE 16 wide and 5,000 steps: 0.916, 0.897, 3.8x, 0.31 / 0.62).

         --config.init_from=world (or a world-model directory of the same world version) continues
         that model instead: its VAE kept, the UNet stage started from its weights for
         unet_stage.steps more steps.
           python -m hdb_jax.world.pretrain --config=configs/world.py --workdir=/tmp/world2 \
               --config.init_from=world --config.unet_stage.steps=7500

  toy    python -m hdb_jax.world.pretrain --config=configs/world.py:toy --workdir=/tmp/world_toy
         A micro model at 32 px for a few steps of each stage (the tests).
"""

import ml_collections

from hdb_jax.config.pieces import parse_variant
from hdb_jax.config.world import WORLD_VARIANTS, pretrain_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  return pretrain_config(parse_variant(variant, WORLD_VARIANTS))
