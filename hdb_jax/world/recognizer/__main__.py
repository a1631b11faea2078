"""Train a world network (the recognizer: World-ID and World-prompt; or the judge) and evaluate it
on held-out identities.

  python -m hdb_jax.world.recognizer --config=configs/recognizer.py --workdir=/tmp/recognizer
  python -m hdb_jax.world.recognizer --config=configs/judge.py --workdir=/tmp/judge

Resumable. Writes WORKDIR/release/{<role>.safetensors (fp16), <role>.json (command, config,
training record, held-out evaluation), MODEL_CARD.md}; pass WORKDIR/release wherever a recognizer
(or judge) is asked for. The library call is
hdb_jax.world.recognizer.train.train_recognizer(config, workdir).
"""

from absl import flags

from hdb_jax.runtime.cli import define_config_flags, run_main
from hdb_jax.runtime.overview import log_config
from hdb_jax.world.recognizer.network import verification_markdown
from hdb_jax.world.recognizer.train import train_recognizer


def main(argv: list[str]) -> None:
  del argv
  log_config(flags.FLAGS.config)
  result = train_recognizer(flags.FLAGS.config, flags.FLAGS.workdir)
  print(f"{result.recognizer.role} in {result.directory}")
  print("\n".join(verification_markdown(result.evaluation, flags.FLAGS.config.to_dict())))


if __name__ == "__main__":
  define_config_flags("configs/recognizer.py:toy")
  run_main(main)
