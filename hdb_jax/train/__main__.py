"""Phase 1: train the hypernetwork (image -> LiDB weights) on Phase 0's weights, sharded over every
device.

  python -m hdb_jax.train --config=configs/hyper.py:tiny --workdir=/tmp/hyper
  python -m hdb_jax.train --config=configs/hyper.py --workdir=/gcs/bucket/hyper \\
      --config.weights=/gcs/bucket/phase0/weights

WORKDIR is a local path; on Cloud TPU a GCS bucket mounted with gcsfuse (/gcs/<bucket>, see
launch/). Writes WORKDIR/{hypernet.json, config.json, checkpoints/, metrics.jsonl, tensorboard/,
samples/}. Run the same command again to resume after a kill or preemption. Use the result with
  python -m hdb_jax.personalize --config=configs/personalize.py:tiny --config.hypernet=WORKDIR ...
The library call is hdb_jax.train.loop.train(config, workdir).
"""

from absl import flags

from hdb_jax.runtime.cli import define_config_flags, run_main
from hdb_jax.runtime.overview import log_config
from hdb_jax.train.loop import train


def main(argv: list[str]) -> None:
  del argv
  log_config(flags.FLAGS.config)
  result = train(flags.FLAGS.config, flags.FLAGS.workdir)
  shown = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
  print(f"trained hypernetwork in {flags.FLAGS.workdir} ({shown})")


if __name__ == "__main__":
  define_config_flags("configs/hyper.py:tiny")
  run_main(main)
