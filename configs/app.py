"""The web app (python -m hdb_jax.app): a face photo becomes a personalized model in the browser.

Variants (`--config=configs/app.py:<variant>`; fields: hdb_jax/config/serving.py app_config):

  ''     python -m hdb_jax.app
         The world model, offline, on http://127.0.0.1:7860: the shipped world hypernetwork when
         this installation has one, else LiDB trained from scratch (the page says which); 40
         finetune steps, 25 sampling steps, 4 prompts, batches of 1, 2, 4 or 8 photos. Needs the
         app extra: pip install -e ".[app]".

  sd15   python -m hdb_jax.app --config=configs/app.py:sd15 --config.hypernet=/ckpt/hyper
         SD1.5 (runwayml layout, hub id or local dir) + a trained hypernetwork; an accelerator.

Measured (benchmarks/serve.py, world model, 2 CPU cores): see the README's "The app" section.
"""

import ml_collections

from hdb_jax.config.pieces import parse_variant
from hdb_jax.config.serving import APP_VARIANTS, app_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  return app_config(parse_variant(variant, APP_VARIANTS))
