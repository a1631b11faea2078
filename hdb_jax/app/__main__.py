"""python -m hdb_jax.app [--config=configs/app.py[:variant]] [--config.FIELD=VALUE ...]: the web
app, on http://127.0.0.1:7860 by default. Needs the app extra: pip install -e ".[app]".

The fields users set most (all: hdb_jax/config/serving.py):
  --config.host=127.0.0.1     where to listen (0.0.0.0: the whole network; only behind a proxy)
  --config.port=7860          the port
  --config.share=False        a public gradio.live link: off unless asked for
  --config.hypernet=auto      the shipped world hypernetwork if installed, else none; or a DIR
  --config.steps=80           finetune steps per photo (the world default)
  --config.batch_sizes=(1,2,4,8)   photos per batched run (padded up: one compile each)
  --config.window_s=0.5       requests arriving this close together share a run
  --config.warm_up=True       compile every batch size before serving
  --config.max_upload_mb=10   upload limit (and max_photo_pixels, min_photo_side)
  --config.files_ttl_s=3600   each session's files are removed after this long
"""

from absl import flags

from hdb_jax.app.server import start_app
from hdb_jax.runtime.cli import define_config_flags, run_main
from hdb_jax.runtime.overview import log_config


def main(argv: list[str]) -> None:
  del argv
  log_config(flags.FLAGS.config)
  start_app(flags.FLAGS.config)


if __name__ == "__main__":
  define_config_flags("configs/app.py", workdir_required=False)
  run_main(main)
