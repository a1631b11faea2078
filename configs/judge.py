"""The world judge: identity for the tables and tests alone (never trained on or selected with).

A residual CNN (not the recognizer's plain one), seed 1, trained on identities 200,000-299,999 (no
other network sees them) to verify identity and to read the face's ground-truth parameters.

Variants (`--config=configs/judge.py:<variant>`; fields: hdb_jax/config/world.py):

  ''     python -m hdb_jax.world.recognizer --config=configs/judge.py --workdir=/tmp/judge
         Writes /tmp/judge/release/{judge.safetensors, judge.json, MODEL_CARD.md} with its
         calibration on 200 held-out identities. The shipped one (hdb_jax/assets/world-judge):
         3,000 steps of batch 64, 51.6 min on 2 CPU cores beside the world training; ROC AUC
         0.9976-0.9999 per style, the same identity in another view +0.949, an impostor +0.016,
         an impostor in the reference's clothing, framing and light +0.025 (docs/world.md).

  toy    python -m hdb_jax.world.recognizer --config=configs/judge.py:toy --workdir=/tmp/jt
         A few steps of a small network (the tests).
"""

import ml_collections

from hdb_jax.config.pieces import parse_variant
from hdb_jax.config.world import WORLD_VARIANTS, recognizer_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  return recognizer_config(parse_variant(variant, WORLD_VARIANTS), role="judge")
