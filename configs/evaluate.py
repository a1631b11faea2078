"""Evaluation: personalize reference photos with each method, sample the prompt set, score (hdb_jax.evaluate).

  python -m hdb_jax.evaluate --config=configs/evaluate.py:tiny --config.images=photos/ --workdir=/tmp/eval
    tiny SD and tiny random CLIP/DINO (offline), no hypernetwork: methods no_hyper and lora@N.

  python -m hdb_jax.evaluate --config=configs/evaluate.py --config.images=test_faces/ \\
      --config.hypernet=/ckpt/hyper --workdir=/tmp/eval
    SD1.5; the paper's comparison modes (Tables 1-3): full, only_hyper, no_hyper, k1, and
    DreamBooth-style LoRA from scratch at 40, 400 and 1200 steps.
"""

import ml_collections

from hdb_jax.config_defaults import personalization_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  if variant not in ("", "tiny"):
    raise ValueError(f"unknown variant {variant!r} (use '' or 'tiny')")
  tiny = variant == "tiny"
  config = personalization_config(variant)
  config.baseline = "lora"  # every from-scratch method here trains a LoRA of rank lora_rank
  config.steps = 20 if tiny else 40  # finetune steps of full, k1 and no_hyper
  # comma-separated: full, only_hyper, no_hyper, k1, lora@N (N steps; several allowed)
  config.methods = ("no_hyper,lora@40" if tiny else
                    "full,only_hyper,no_hyper,k1,lora@40,lora@400,lora@1200")
  config.prompts = "tiny" if tiny else "all"  # a set of evaluation/prompts.py, or 'p1|p2' (each with {token})
  config.num_samples = 1 if tiny else 4
  config.sample_batch = 2 if tiny else 16  # images per sampling call (prompts x samples)
  config.identities_per_batch = 1 if tiny else 8  # photos personalized together
  config.clip_model = "tiny-clip" if tiny else "openai/clip-vit-base-patch32"  # hub id, local dir, tiny-clip[:DIR]
  config.dino_model = "tiny-dino" if tiny else "facebook/dino-vits16"  # hub id, local dir, tiny-dino[:DIR]
  config.face_rec = True  # dlib face descriptors (the `face` extra); False to skip Face Rec
  config.face_upsample = 1  # dlib detector upsampling: 1 finds faces from ~40 px; 0 from ~80 px, ~3x faster
  config.embed_batch = 8  # images per CLIP/DINO call
  config.overwrite = False
  return config
