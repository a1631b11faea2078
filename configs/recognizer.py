"""The world recognizer: World-ID (identity embedding) and World-prompt (contexts and style).

Variants (`--config=configs/recognizer.py:<variant>`; fields: hdb_jax/config/world.py):

  ''     python -m hdb_jax.world.recognizer --config=configs/recognizer.py --workdir=/tmp/recognizer
         3,000 steps of 32 identities x 2 renders in random scenes and styles, on 2 CPU cores
         (50 min beside the world training). Writes /tmp/recognizer/release/{recognizer.safetensors,
         recognizer.json, MODEL_CARD.md} with its held-out verification (ROC AUC, TAR at FAR 1%
         per style: 0.989-0.9998 on 200 identities) and attribute accuracy (0.96-1.00).

  toy    python -m hdb_jax.world.recognizer --config=configs/recognizer.py:toy --workdir=/tmp/rt
         A few steps of small networks (the tests).
"""

import ml_collections

from hdb_jax.config.pieces import parse_variant
from hdb_jax.config.world import WORLD_VARIANTS, recognizer_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  return recognizer_config(parse_variant(variant, WORLD_VARIANTS))
