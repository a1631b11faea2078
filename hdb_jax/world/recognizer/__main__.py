"""Train the world recognizer (World-ID and World-prompt) and evaluate it on held-out identities.

  python -m hdb_jax.world.recognizer --config=configs/recognizer.py --workdir=/tmp/recognizer

Resumable. Writes WORKDIR/release/{recognizer.safetensors (fp16), recognizer.json (command,
config, training record, held-out evaluation), MODEL_CARD.md}; pass WORKDIR/release wherever a
recognizer is asked for. The library call is
hdb_jax.world.recognizer.train.train_recognizer(config, workdir).
"""

from absl import flags

from hdb_jax.runtime.cli import define_config_flags, run_main
from hdb_jax.runtime.overview import log_config
from hdb_jax.world.recognizer.train import train_recognizer


def main(argv: list[str]) -> None:
  del argv
  log_config(flags.FLAGS.config)
  result = train_recognizer(flags.FLAGS.config, flags.FLAGS.workdir)
  world_id, world_prompt = result.evaluation["world_id"], result.evaluation["world_prompt"]
  print(f"recognizer in {result.directory}")
  print("World-ID on held-out identities:  style          ROC AUC  TAR@FAR1%")
  for style, scores in world_id.items():
    print(f"  {style:<30} {scores['auc']:.4f}   {scores['tar_at_far_1pct']:.3f}")
  print("World-prompt accuracy on held-out renders:")
  for name, accuracy in world_prompt.items():
    print(f"  {name:<30} {accuracy:.3f}")


if __name__ == "__main__":
  define_config_flags("configs/recognizer.py:toy")
  run_main(main)
