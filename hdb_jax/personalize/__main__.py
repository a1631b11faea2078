"""Phase 2: personalize face photos: (hypernetwork prediction +) a short jitted finetune.

  python -m hdb_jax.personalize --config=configs/personalize.py:tiny --config.image=face.jpg \\
      --workdir=OUT

Writes, per photo, into WORKDIR (one photo) or WORKDIR/<photo name>/ (several):
identity.safetensors, samples/ (grid.png and one PNG per prompt), record.json (timings, losses,
config) and export/<format>/. The library calls are hdb_jax.personalize.loop.personalize(config,
workdir) (files in, files out) and hdb_jax.personalize.step.personalize_images(base, config, images,
predictor) (arrays in, identities out).
"""

import os

from absl import flags

from hdb_jax.personalize.loop import personalize
from hdb_jax.runtime.cli import define_config_flags, run_main
from hdb_jax.runtime.overview import log_config


def main(argv: list[str]) -> None:
  del argv
  log_config(flags.FLAGS.config)
  for directory in personalize(flags.FLAGS.config, flags.FLAGS.workdir):
    print(f"identity written to {os.path.join(directory, 'identity.safetensors')}")


if __name__ == "__main__":
  define_config_flags("configs/personalize.py:tiny")
  run_main(main)
