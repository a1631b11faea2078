"""Evaluate personalization methods with the paper's metrics: CLIP-T, CLIP-I, DINO and Face Rec.

  python -m hdb_jax.evaluate --config=configs/evaluate.py:tiny --config.images=photos/ \\
      --workdir=/tmp/eval
  python -m hdb_jax.evaluate --config=configs/evaluate.py --config.images=test_faces/ \\
      --config.hypernet=/ckpt/hyper --workdir=/tmp/eval

The methods and what is written are described in hdb_jax/evaluate/loop.py; the library call is
hdb_jax.evaluate.loop.evaluate(config, workdir).
"""

import os

from absl import flags

from hdb_jax.evaluate import report
from hdb_jax.evaluate.loop import evaluate
from hdb_jax.runtime.cli import define_config_flags, run_main
from hdb_jax.runtime.overview import log_config


def main(argv: list[str]) -> None:
  del argv
  log_config(flags.FLAGS.config)
  results = evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
  print(report.summary_table(results))
  print(
    f"results: {os.path.join(flags.FLAGS.workdir, 'results.json')}, "
    f"report: {os.path.join(flags.FLAGS.workdir, 'report.html')}"
  )


if __name__ == "__main__":
  define_config_flags("configs/evaluate.py:tiny")
  run_main(main)
