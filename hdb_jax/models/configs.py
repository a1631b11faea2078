"""Architecture configs: Stable Diffusion 1.5 (for counting without downloads) and the tiny family.

The tiny family keeps SD1.5's topology -- 4 resolution levels, cross-attention in 3 of them,
2 layers per block, attention in the mid block, so 16 transformer blocks -- at small widths.
Widths are multiples of 32 because the Flax UNet's GroupNorms always use 32 groups.
"""

from typing import Any

# stable-diffusion-v1-5/stable-diffusion-v1-5 unet/config.json (architecture keys only).
SD15_UNET: dict[str, Any] = {
  "sample_size": 64,
  "in_channels": 4,
  "out_channels": 4,
  "down_block_types": [
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "DownBlock2D",
  ],
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  "block_out_channels": [320, 640, 1280, 1280],
  "layers_per_block": 2,
  "attention_head_dim": 8,
  "cross_attention_dim": 768,
  "flip_sin_to_cos": True,
  "freq_shift": 0,
}

# openai/clip-vit-large-patch14 text tower, as in SD1.5's text_encoder/config.json.
SD15_TEXT_ENCODER: dict[str, Any] = {
  "vocab_size": 49408,
  "hidden_size": 768,
  "intermediate_size": 3072,
  "num_hidden_layers": 12,
  "num_attention_heads": 12,
  "max_position_embeddings": 77,
  "hidden_act": "quick_gelu",
  "projection_dim": 768,
}

SD15_VAE: dict[str, Any] = {
  "in_channels": 3,
  "out_channels": 3,
  "down_block_types": ["DownEncoderBlock2D"] * 4,
  "up_block_types": ["UpDecoderBlock2D"] * 4,
  "block_out_channels": [128, 256, 512, 512],
  "layers_per_block": 2,
  "latent_channels": 4,
  "sample_size": 512,
  "scaling_factor": 0.18215,
}

# SD1.5's noise schedule (scheduler/scheduler_config.json), used for training with DDPM.
SD15_SCHEDULER: dict[str, Any] = {
  "num_train_timesteps": 1000,
  "beta_start": 0.00085,
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "prediction_type": "epsilon",
  "clip_sample": False,
  "set_alpha_to_one": False,
  "steps_offset": 1,
}

TINY_UNET: dict[str, Any] = {
  **SD15_UNET,
  "sample_size": 8,
  "block_out_channels": [32, 32, 64, 64],
  "attention_head_dim": 2,
  "cross_attention_dim": 32,
}

# Two resolution levels and 4 transformer blocks instead of SD1.5's 16: for tests of machinery that
# does not depend on depth (sharding, multi-process, resume), where compile time would dominate.
MICRO_UNET: dict[str, Any] = {
  **TINY_UNET,
  "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
  "block_out_channels": [32, 64],
  "layers_per_block": 1,
}

TINY_TEXT_ENCODER: dict[str, Any] = {
  **SD15_TEXT_ENCODER,
  "hidden_size": 32,
  "intermediate_size": 64,
  "num_hidden_layers": 2,
  "num_attention_heads": 4,
  "projection_dim": 32,
  # vocab_size is set from the tiny tokenizer when the model is made.
}

TINY_VAE: dict[str, Any] = {
  **SD15_VAE,
  "block_out_channels": [32, 32, 32, 32],
  "layers_per_block": 1,
  "sample_size": 64,
}

TINY_RESOLUTION = 64  # pixels; latents are 8x8.

# The world model (hdb_jax.world.pretrain): 64 px images, a VAE of factor 4 with 8 latent channels
# (16x16x8 latents: with 4, 2,000 steps blurred eyes and brows away at 22 dB) whose
# full-resolution level is 16 channels wide (32 took 1.8x the VAE's step time), a UNet with
# cross-attention at its 8x8 and 4x4 levels (attention at 16x16 cost 40% of the step on 2 CPU
# cores), and a 3-layer CLIP text tower over 32 tokens. 4.1M + 0.68M + 0.69M parameters, about
# 11 MB in fp16.
WORLD_RESOLUTION = 64
WORLD_MAX_LENGTH = 32  # tokens: the longest world caption with a token is 22

WORLD_UNET: dict[str, Any] = {
  **SD15_UNET,
  "sample_size": WORLD_RESOLUTION // 4,
  "in_channels": 8,
  "out_channels": 8,
  "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
  "block_out_channels": [64, 96, 96],
  "layers_per_block": 1,
  "attention_head_dim": 4,
  "cross_attention_dim": 128,
}

WORLD_VAE: dict[str, Any] = {
  **SD15_VAE,
  "down_block_types": ["DownEncoderBlock2D"] * 3,
  "up_block_types": ["UpDecoderBlock2D"] * 3,
  "block_out_channels": [32, 64, 64],
  "norm_num_groups": 16,
  "layers_per_block": 1,
  "latent_channels": 8,
  "sample_size": WORLD_RESOLUTION,
  "scaling_factor": 1.0,  # set from the trained encoder's latents (1 / their std), as SD's was
}

WORLD_TEXT_ENCODER: dict[str, Any] = {
  **SD15_TEXT_ENCODER,
  "hidden_size": 128,
  "intermediate_size": 512,
  "num_hidden_layers": 3,
  "num_attention_heads": 4,
  "max_position_embeddings": WORLD_MAX_LENGTH,
  "projection_dim": 128,
}

# google/vit-huge-patch14-224-in21k's architecture
VIT_H14: dict[str, Any] = dict(
  hidden_size=1280,
  num_hidden_layers=32,
  num_attention_heads=16,
  intermediate_size=5120,
  image_size=224,
  patch_size=14,
)
# The tiny random vision tower: tiny CLIP's and tiny DINO's (eval_models), and the `tiny-vit`
# hypernetwork encoder.
TINY_VISION: dict[str, Any] = dict(
  image_size=32,
  patch_size=8,
  hidden_size=32,
  intermediate_size=64,
  num_hidden_layers=2,
  num_attention_heads=4,
)
# The world hypernetwork's image encoder: a ViT at the world's 64 px (8 px patches: 64 tokens and
# CLS), made at random on first use ('world-vit') and trained with the hypernetwork.
WORLD_VISION: dict[str, Any] = dict(
  image_size=64,
  patch_size=8,
  hidden_size=128,
  intermediate_size=256,
  num_hidden_layers=4,
  num_attention_heads=4,
)
