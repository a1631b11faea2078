"""Phase 1: train the hypernetwork on (face image, Phase 0 LiDB weights) pairs.

  python -m hdb_jax.train --config=configs/hyper.py:tiny --workdir=/tmp/hyper
    tiny SD + tiny ViT on 8 procedural faces; with weights='auto' Phase 0 runs first into
    WORKDIR/phase0 (resumable). A few minutes on 2 CPU cores, most of it compiling.

  python -m hdb_jax.train --config=configs/hyper.py --workdir=/gcs/bucket/hyper \\
      --config.weights=/gcs/bucket/phase0/weights --config.data.data_dir=gs://bucket/tfds
    SD1.5 + ViT-H/14 on CelebA-HQ 512 px, global batch 64 over every device, bf16 compute, remat.

Variants: '' (SD1.5, TPU/GPU), 'tiny' (CPU minutes), 'sd15_16gb' (SD1.5 on 16 GB accelerators:
batch 1 per device, remat of the whole UNet, memory-efficient attention, base sharded on 'fsdp').
"""

import ml_collections

from hdb_jax.config_defaults import base_config, optimizer_config

VARIANTS = ("", "tiny", "sd15_16gb")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r} (use one of {', '.join(repr(v) for v in VARIANTS)})")
  tiny = variant == "tiny"
  config = base_config("tiny" if tiny else "")
  config.weights = "auto" if tiny else ""  # Phase 0 weights dataset dir; 'auto': run Phase 0 into WORKDIR/phase0
  config.encoder = ml_collections.ConfigDict(dict(
      pretrained="tiny-vit" if tiny else "google/vit-huge-patch14-224-in21k",  # ViT-H/14 as in the paper
      revision=ml_collections.config_dict.placeholder(str),
      trainable=False))
  config.model = ml_collections.ConfigDict(dict(
      d_model=64 if tiny else 768, num_heads=4 if tiny else 12, depth=2, mlp_dim=128 if tiny else 3072,
      refine_steps=3,           # s: iterative refinement steps (1 = the paper's k=1 ablation)
      head_init_std=1e-3))
  config.alpha = 1.0            # diffusion loss weight (the per-example MSE, ~0.1-1)
  # Weight-space loss weight on ||θ̂ - θ*||², the squared L2 norm over all D LiDB numbers (the paper's term;
  # D = 28,800 on SD1.5's default layers). At 1 it matters: on :tiny (D = 12,224) it starts at ~600 beside
  # a diffusion loss of ~0.9 and falls to 0.015 in 300 steps (weight MSE 1.2e-6), measured with
  # `python -m hdb_jax.train --config=configs/hyper.py:tiny --config.steps=300 --config.eval.every=0
  # --config.batch_size=4`; at the default batch 8 on 8 devices, 200 steps: 0.0077 (held out: 1,115).
  config.beta = 1.0
  config.batch_size = 8 if tiny else 64  # global: split over processes and devices (8: 1 per device on 8)
  config.steps = 200 if tiny else 50_000
  config.optim = optimizer_config(1e-3 if tiny else 1e-4, optimizer="adamw", weight_decay=1e-4,
                                  schedule="cosine", warmup_steps=10 if tiny else 1000)
  config.mesh = (-1, 1)         # ('data', 'fsdp') sizes; -1 = the remaining devices
  config.shard_frozen = False   # split large frozen base weights on 'fsdp'
  config.remat = not tiny       # rematerialize the UNet in the backward pass
  config.memory_efficient_attention = not tiny
  config.log_every = 10 if tiny else 50
  config.checkpoint_every = 50 if tiny else 1000
  config.keep_checkpoints = 3
  config.async_checkpoint = True
  config.max_nonfinite_steps = 10  # stop after this many steps in a row with a NaN/inf loss
  config.tensorboard = True
  config.eval = ml_collections.ConfigDict(dict(
      every=100 if tiny else 2000,  # 0: never
      num_identities=2 if tiny else 64,  # held out of training (chosen by a hash of the id)
      samples=True, sample_steps=4 if tiny else 25, guidance=7.5))
  config.distributed = ml_collections.ConfigDict(dict(
      coordinator_address="", num_processes=0, process_id=-1,  # or JAX_COORDINATOR_ADDRESS etc.
      auto=not tiny))  # jax.distributed.initialize() discovers TPU pods / SLURM by itself
  config.data.augment = not tiny
  config.data.views_per_identity = 1
  if tiny:
    config.data.num_identities = 10
  if variant == "sd15_16gb":
    config.batch_size = 8
    config.mesh = (-1, 2)
    config.shard_frozen = True
  return config
