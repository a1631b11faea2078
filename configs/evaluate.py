"""Evaluation: personalize reference photos with each method, sample the prompt set, score
(hdb_jax.evaluate).

Variants (`--config=configs/evaluate.py:<variant>`; fields: hdb_jax/config/phases.py
evaluate_config):

  tiny   python -m hdb_jax.evaluate --config=configs/evaluate.py:tiny --config.images=photos/ \\
             --workdir=/tmp/eval
         Tiny SD and tiny random CLIP/DINO (offline), no hypernetwork: methods no_hyper and lora@N.
         Measured on 2 CPU cores: ~3 min for one photo, most of it compiling; the scores of random
         models show the plumbing, not quality.

  ''     python -m hdb_jax.evaluate --config=configs/evaluate.py --config.images=test_faces/ \\
             --config.hypernet=/ckpt/hyper --workdir=/tmp/eval
         SD1.5; the paper's comparison modes (Tables 1-3): full, only_hyper, no_hyper, k1, and
         DreamBooth-style LoRA from scratch at 40, 400 and 1200 steps. Not yet measured.

  world  python -m hdb_jax.evaluate --config=configs/evaluate.py:world --config.images=faces/ \\
             --workdir=/tmp/eval_world
         The world model and the shipped world hypernetwork (--config.hypernet=DIR for another)
         on held-out world faces on the 12 `world` prompts, scored first by the world judge
         (World-judge: identity by a network trained apart from the hypernetwork's encoder), then
         by the world recognizer (World-ID, World-prompt), each with its 95% bootstrap interval
         over identities; noise is drawn per identity and paired across methods
         (tables.paired_difference gives paired intervals between methods). CLIP/DINO are tiny
         random models (no pretrained ones offline). Methods of Tables 1 and 3: full,
         only_hyper, no_hyper, k1, lora@40/200/400 (add base for the floor). Measured on world
         v2 with benchmarks/world_tables.py (32 test identities x 12 prompts x 2 samples): see
         the README, "HyperDreamBooth on the world".
"""

import ml_collections

from hdb_jax.config.phases import PHASE_VARIANTS, evaluate_config
from hdb_jax.config.pieces import parse_variant


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  return evaluate_config(parse_variant(variant, PHASE_VARIANTS))
