"""Phase 0: pre-optimize one LiDB weight set per training face, many faces per jitted step.

  python -m hdb_jax.preoptimize --config=configs/lidb.py:tiny --workdir=/tmp/phase0

Writes WORKDIR/weights/ (see hdb_jax.formats.weights_dataset). Resumable: a restarted run skips the
chunks already written. The library call is hdb_jax.preoptimize.loop.preoptimize(config, workdir).
"""

import numpy as np
from absl import flags

from hdb_jax.preoptimize.loop import preoptimize
from hdb_jax.runtime.cli import define_config_flags, run_main
from hdb_jax.runtime.overview import log_config


def main(argv: list[str]) -> None:
  del argv
  log_config(flags.FLAGS.config)
  dataset = preoptimize(flags.FLAGS.config, flags.FLAGS.workdir)
  losses = dataset.final_losses()
  print(
    f"wrote {len(losses)} identities to {dataset.directory} "
    f"(mean final loss {np.mean(list(losses.values())):.4f})"
  )


if __name__ == "__main__":
  define_config_flags("configs/lidb.py:tiny")
  run_main(main)
