"""Phase 1: train the hypernetwork on (face image, Phase 0 LiDB weights) pairs.

Variants (`--config=configs/hyper.py:<variant>`; fields: hdb_jax/config/phases.py hyper_config):

  tiny       python -m hdb_jax.train --config=configs/hyper.py:tiny --workdir=/tmp/hyper
             Tiny SD + tiny ViT on 8 procedural faces; with weights='auto' Phase 0 (the `phase0`
             fields) runs first into WORKDIR/phase0 (resumable). Measured on 2 CPU cores: 0.14-0.18
             s/step at batch 4 (weight loss 609 -> 0.015 in 300 steps); a few minutes, mostly
             compiling. On 8 fake devices (XLA_FLAGS=--xla_force_host_platform_device_count=8),
             batch 8: 0.76 s/step, weight loss 0.0077 (held out: 1,115; 8 training faces do not
             generalize).

  ''         python -m hdb_jax.train --config=configs/hyper.py --workdir=/gcs/bucket/hyper \\
                 --config.weights=/gcs/bucket/phase0/weights --config.data.data_dir=gs://bucket/tfds
             SD1.5 + ViT-H/14 on CelebA-HQ 512 px, global batch 64 over every device, bf16 compute,
             per-block remat "dots", attention "auto" (flash on TPU). Not trained yet (needs an
             accelerator); compiled for TPUs on a CPU host (python -m hdb_jax.aot
             --config=configs/hyper.py --topology=v5e:2x4, SD1.5's configs from
             --write_architectures; README, "Compiled for TPU without a TPU"), per device, with
             chunked attention: v5e-8 13.5 GiB of 16 (no remat: 15.3), 26.2 TFLOP a step, >= 254
             ms, <= 252 images/s; v4-8 (8 cores) 13.7 GiB of 16, <= 200 images/s; v5p-8
             (4 chips, 16 images each) 20.4 GiB of 95, <= 553 images/s.

  world      python -m hdb_jax.train --config=configs/hyper.py:world --workdir=/tmp/hyper_world
             The world model: Phase 0 over 1,024 world identities first (configs/lidb.py:world,
             into WORKDIR/phase0; 21 min on 2 free cores), then 2,000 steps of batch 32 (26 min of
             steps on 2 cores) of a 128-wide decoder over the world recognizer's frozen World-ID
             CNN ('world-recognizer': no pretrained ViT exists offline, and a ViT trained from
             scratch learned no identity), the diffusion loss alone (beta 0); 32 identities held
             out for the eval. Resumable in both phases. This made the shipped world hypernetwork
             (hdb_jax/assets/world-hypernet): held-out weight loss 418, diffusion loss 0.0718. On
             32 test identities x 12 prompts x 2 samples, by the judge (benchmarks/world_tables.py;
             base model -0.007, the render ceiling 0.915): the prediction alone 0.233, + 80 steps
             of the LoRA relaxation 0.368 (0.41 of the way to the ceiling), + the default LiDB
             relaxation 0.280. --config.model.refine_steps=1 (the paper's k=1, on the same Phase 0
             weights: --config.weights=WORKDIR/phase0/weights): 18.5 min, 0.354 with the LoRA
             relaxation. README, "HyperDreamBooth on the world".

  sd15_16gb  SD1.5 on 16 GB accelerators: batch 8 (1 per device on 8), the base weights and the
             large trainables with their Adam moments split on 'fsdp' (mesh (-1, 2)). Compiled for
             v5e-8: 7.7 GiB a chip (frozen encoder, earlier build, <= 62 images/s); with the ViT-H
             trainable (--config.encoder.trainable=True, remat per ViT layer) not compiled yet.
"""

import ml_collections

from hdb_jax.config.phases import HYPER_VARIANTS, hyper_config
from hdb_jax.config.pieces import parse_variant


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  return hyper_config(parse_variant(variant, HYPER_VARIANTS))
