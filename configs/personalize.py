"""Phase 2: personalize one face photo (or several at once) in seconds.

  python -m hdb_jax.personalize --config=configs/personalize.py:tiny --config.image=face.jpg --workdir=/tmp/me
    tiny model, no hypernetwork (LiDB from scratch, the baseline), 40 steps; under a minute on 2 CPU
    cores once compiled. Writes /tmp/me/{identity.safetensors,samples/,record.json,export/}.

  python -m hdb_jax.personalize --config=configs/personalize.py --config.image=face.jpg \\
      --config.hypernet=/ckpt/hyper --workdir=/tmp/me
    SD1.5: hypernetwork prediction, then the rank-relaxed fast finetune (LoRA rank 4, 40 steps).

Several photos in one batched run: --config.images=a.jpg,b.jpg (or a folder); one identity each,
under WORKDIR/<photo name>/.
"""

import ml_collections

from hdb_jax.config_defaults import personalization_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  if variant not in ("", "tiny"):
    raise ValueError(f"unknown variant {variant!r} (use '' or 'tiny')")
  config = personalization_config(variant)
  config.sample_prompts = ["a {token} face", "a {token} face as a rock star",
                           "a {token} face in impressionist style"]
  config.export = "diffusers"   # '' to skip; diffusers|kohya|merged
  config.overwrite = False
  return config
