"""Phase 2: personalize one face photo (or several at once) in seconds.

Variants (`--config=configs/personalize.py:<variant>`; fields: hdb_jax/config/pieces.py
personalization_config and phases.py personalize_config):

  tiny   python -m hdb_jax.personalize --config=configs/personalize.py:tiny \\
             --config.image=face.jpg --workdir=/tmp/me
         The tiny model, no hypernetwork (LiDB from scratch, the baseline), 40 steps. Writes
         /tmp/me/{identity.safetensors,samples/,record.json,export/}. Measured on 2 CPU cores: the
         finetune step 0.015 s once compiled (0.05x PyTorch diffusers + peft,
         benchmarks/finetune.py).

  ''     python -m hdb_jax.personalize --config=configs/personalize.py --config.image=face.jpg \\
             --config.hypernet=/ckpt/hyper --workdir=/tmp/me
         SD1.5: hypernetwork prediction, then the rank-relaxed fast finetune (LoRA rank 4, 40
         steps). On 2 CPU cores at SD1.5 widths and 32x32 latents: 2.19 s a step (0.48x PyTorch +
         peft). Compiled for one v5e chip (python -m hdb_jax.aot --config=configs/personalize.py
         --hypernet_config=configs/hyper.py, SD1.5's configs from --write_architectures): the
         finetune needs 8.7 GiB of 16, 1.8 TFLOP and >= 72.5 ms a step: >= 2.9 s for the 40
         steps of one personalization.

  world  python -m hdb_jax.personalize --config=configs/personalize.py:world \\
             --config.image=face.png --config.hypernet=/tmp/hyper_world --workdir=/tmp/me
         The world model and the shipped world hypernetwork (--config.hypernet=world, the
         default; or DIR, a Phase 1 WORKDIR or export of configs/hyper.py:world): a world face
         photo (`python -m hdb_jax.world render --identity=1000000 --out=face.png`) -> prediction
         + 80 finetune steps at lr 1e-2 of 4 more LiDB ranks (the compact relaxation: one LiDB of
         rank 5), chosen on 16 world v2 validation identities (World-ID / World-prompt 0.414 /
         0.894; the LoRA relaxation's best, lr 3e-3 and 80 steps: 0.393 / 0.918);
         --config.relaxation=lora --config.optim.learning_rate=3e-3 for the paper's. Samples at
         guidance 7.5.

Several photos in one batched run: --config.images=a.jpg,b.jpg (or a folder); one identity each,
under WORKDIR/<photo name>/.
"""

import ml_collections

from hdb_jax.config.phases import PHASE_VARIANTS, personalize_config
from hdb_jax.config.pieces import parse_variant


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  return personalize_config(parse_variant(variant, PHASE_VARIANTS))
