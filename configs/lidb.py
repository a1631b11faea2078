"""Phase 0: pre-optimize one LiDB weight set per training face (the hypernetwork's targets).

Variants (`--config=configs/lidb.py:<variant>`; fields: hdb_jax/config/pieces.py and phases.py):

  tiny   python -m hdb_jax.preoptimize --config=configs/lidb.py:tiny --workdir=/tmp/phase0
         The tiny random model, 8 procedural faces, 4 per step, 60 steps. Writes
         /tmp/phase0/weights/{index.json,chunk_*.safetensors}. Measured on 2 CPU cores: 78 s, ~65 s
         of it compiling; 26 identity-steps/s after (mean final diffusion loss ~0.9 on the random
         model).

  ''     python -m hdb_jax.preoptimize --config=configs/lidb.py --workdir=/gcs/bucket/phase0 \\
             --config.data.data_dir=gs://bucket/tfds
         SD1.5 on CelebA-HQ 512 px (see hdb_jax/data/sources.py for its manual download), 16
         identities a step, 400 steps each, bf16 compute. Not yet measured (needs an accelerator).
"""

import ml_collections

from hdb_jax.config.phases import preoptimize_config
from hdb_jax.config.pieces import parse_variant


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  return preoptimize_config(parse_variant(variant))
