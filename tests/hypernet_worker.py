"""`python -m hdb_jax.train` plus a dump of the final parameters, for the multi-device tests.

  python tests/hypernet_worker.py --config=configs/hyper.py:tiny --workdir=DIR \\
      --dump=OUT.npz [--config.x=...]

Run in a subprocess (8 fake CPU devices via XLA_FLAGS, or as one of several jax.distributed
processes); each process writes OUT.npz with its own copy of the (replicated) parameters, flattened
by path.
"""

import sys

import numpy as np
from absl import flags
from flax import traverse_util

sys.path.insert(0, ".")
from hdb_jax.runtime.cli import define_config_flags, run_main

flags.DEFINE_string("dump", None, "Where to write this process's final parameters (.npz).")


def main(argv):
  del argv
  import jax  # pylint: disable=import-outside-toplevel

  from hdb_jax.train.loop import train

  result = train(flags.FLAGS.config, flags.FLAGS.workdir)
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  # whole parameters, replicated or split on 'fsdp'
  local = multihost_utils.process_allgather(result.state.params, tiled=True)
  flat = {"/".join(k): v for k, v in traverse_util.flatten_dict(local).items()}
  np.savez(
    flags.FLAGS.dump.replace(".npz", f".{jax.process_index()}.npz"),
    **flat,
    __devices__=np.asarray(jax.device_count()),
    __processes__=np.asarray(jax.process_count()),
  )


if __name__ == "__main__":
  define_config_flags("configs/hyper.py:tiny")
  run_main(main)
