"""Phase 0: pre-optimize one LiDB weight set per training face (the hypernetwork's targets).

  python -m hdb_jax.preoptimize --config=configs/lidb.py:tiny --workdir=/tmp/phase0
    tiny model, 8 procedural faces, 4 per step, 60 steps: about a minute on 2 CPU cores (most of it
    compiling); writes /tmp/phase0/weights/{index.json,chunk_*.safetensors}.

  python -m hdb_jax.preoptimize --config=configs/lidb.py --workdir=/gcs/bucket/phase0 \\
      --config.data.data_dir=gs://bucket/tfds
    SD1.5 on CelebA-HQ 512 px (see hdb_jax/data/sources.py for its manual download), 16 identities a
    step, 400 steps each, bf16 compute.
"""

import ml_collections

from hdb_jax.config_defaults import base_config, optimizer_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  if variant not in ("", "tiny"):
    raise ValueError(f"unknown variant {variant!r} (use '' or 'tiny')")
  tiny = variant == "tiny"
  config = base_config(variant)
  config.num_identities = 8 if tiny else 0  # 0: every identity of the source
  config.identities_per_step = 4 if tiny else 16
  config.steps = 60 if tiny else 400
  config.final_loss_window = 10  # the recorded final loss: mean over the last steps (per identity)
  config.optim = optimizer_config(3e-2 if tiny else 5e-3)
  config.data.num_identities = config.num_identities or 8
  config.data.views_per_identity = 1
  return config
