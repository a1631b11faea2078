"""The world recognizer: World-ID (identity embedding) and World-prompt (contexts and style).

Variants (`--config=configs/recognizer.py:<variant>`; fields: hdb_jax/config/world.py):

  ''     python -m hdb_jax.world.recognizer --config=configs/recognizer.py --workdir=/tmp/recognizer
         3,000 steps of 32 identities x 2 renders in random scenes and styles (identities
         0-99,999, the world model's). Writes /tmp/recognizer/release/{recognizer.safetensors,
         recognizer.json, MODEL_CARD.md} with its held-out verification and calibration. The
         shipped one (world v2) is 2,000 of those steps (--config.recognizer_stage.steps=2000,
         20.5 min on 2 CPU cores beside the world training): ROC AUC 0.986-0.998 per style on 200
         held-out identities, attribute accuracy 0.967-0.999. The judge (configs/judge.py) is the
         other network: identity for the tables and tests.

  toy    python -m hdb_jax.world.recognizer --config=configs/recognizer.py:toy --workdir=/tmp/rt
         A few steps of small networks (the tests).
"""

import ml_collections

from hdb_jax.config.pieces import parse_variant
from hdb_jax.config.world import WORLD_VARIANTS, recognizer_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  return recognizer_config(parse_variant(variant, WORLD_VARIANTS))
