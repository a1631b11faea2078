"""Phase 0: pre-optimize one LiDB weight set per training face (the hypernetwork's targets).

Variants (`--config=configs/lidb.py:<variant>`; fields: hdb_jax/config/pieces.py and phases.py):

  tiny   python -m hdb_jax.preoptimize --config=configs/lidb.py:tiny --workdir=/tmp/phase0
         The tiny random model, 8 procedural faces, 4 per step, 60 steps. Writes
         /tmp/phase0/weights/{index.json,chunk_*.safetensors}. Measured on 2 CPU cores: 78 s, ~65 s
         of it compiling; 26 identity-steps/s after (mean final diffusion loss ~0.9 on the random
         model).

  world  python -m hdb_jax.preoptimize --config=configs/lidb.py:world --workdir=/tmp/phase0_world
         The world model (hdb_jax/assets/world-sd) on 1,024 world identities' photos (the 'world'
         source: ids 0-1023, default scene), 32 a step, 150 steps each at lr 1e-2; 11,054 LiDB
         numbers per identity (75 layers). Measured on 2 CPU cores: 0.63 s per step of 32
         identities (51 identity-steps/s), so ~50 min for all 1,024, resumable by chunk.

  ''     python -m hdb_jax.preoptimize --config=configs/lidb.py --workdir=/gcs/bucket/phase0 \\
             --config.data.data_dir=gs://bucket/tfds
         SD1.5 on CelebA-HQ 512 px (see hdb_jax/data/sources.py for its manual download), 16
         identities a step, 400 steps each, bf16 compute. Not run yet (needs an accelerator);
         its memory per v5e chip: python -m hdb_jax.aot --config=configs/lidb.py
         --config.remat=dots --config.pretrained=DIR/sd15 (DIR from --write_architectures).
"""

import ml_collections

from hdb_jax.config.phases import PHASE_VARIANTS, preoptimize_config
from hdb_jax.config.pieces import parse_variant


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  return preoptimize_config(parse_variant(variant, PHASE_VARIANTS))
