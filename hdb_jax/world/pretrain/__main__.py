"""Train the world model from scratch: the VAE, then the UNet with the text encoder; or continue
a trained one (--config.init_from: the UNet stage alone, from its weights).

  python -m hdb_jax.world.pretrain --config=configs/world.py --workdir=/tmp/world
  python -m hdb_jax.world.pretrain --config=configs/world.py:toy --workdir=/tmp/world_toy
  python -m hdb_jax.world.pretrain --config=configs/world.py --workdir=/tmp/world2 \
      --config.init_from=world --config.unet_stage.steps=4000

Resumable: the same command after a kill goes on from the last checkpoint of the stage it was in.
Writes WORKDIR/{config.json, init/ (the starting model), vae/ (not when continuing), unet/
(checkpoints, metrics.jsonl, tensorboard), samples/, model/ (diffusers, Flax), release/ (fp16
PyTorch + MODEL_CARD.md, with torch)}. The library call is
hdb_jax.world.pretrain.loop.pretrain(config, workdir).
"""

from absl import flags

from hdb_jax.runtime.cli import define_config_flags, run_main
from hdb_jax.runtime.overview import log_config
from hdb_jax.world.pretrain.loop import pretrain


def main(argv: list[str]) -> None:
  del argv
  log_config(flags.FLAGS.config)
  result = pretrain(flags.FLAGS.config, flags.FLAGS.workdir)
  unet = result.records["unet"]
  print(
    f"world model in {result.model_dir} ({int(unet['steps'])} UNet steps, loss "
    f"{unet.get('loss', float('nan')):.4f})"
    + (f"; release in {result.release_dir}" if result.release_dir else "")
  )


if __name__ == "__main__":
  define_config_flags("configs/world.py:toy")
  run_main(main)
