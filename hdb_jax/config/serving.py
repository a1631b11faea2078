"""The app's config (configs/app.py): Phase 2's personalization config plus the service and the web
server. The package owns it so that `python -m hdb_jax.app` works from a plain install."""

import ml_collections

from hdb_jax.config.phases import personalize_config

# configs/app.py's variants: '' the world model (offline), 'sd15' SD1.5 + a trained hypernetwork
APP_VARIANTS = ("", "sd15")
APP_PROMPTS = (
  "a {token} face",
  "a {token} face wearing a red hat",
  "a {token} face on a beach",
  "a {token} face in pop-art style",
)


def app_config(variant: str) -> ml_collections.ConfigDict:
  """personalize_config of the world model ('') or SD1.5 ('sd15') + the app's fields."""
  world = variant == ""
  config = personalize_config("world" if world else "")
  config.export = ""  # the app exports both LoRA formats itself
  # 'auto': the shipped world hypernetwork when installed, else none (LiDB from scratch); or a
  # Phase 1 WORKDIR / export directory ('world' names the shipped one)
  config.hypernet = "auto" if world else ""
  config.num_samples = 1 if world else 2
  config.prompts = list(APP_PROMPTS)  # the page's default prompts, one per line
  config.max_prompts = 4  # prompts per request (runs are padded to this: one compiled shape)
  config.batch_sizes = (1, 2, 4, 8)  # photos per run, padded up to the next of these
  config.window_s = 0.5  # requests arriving within this of the first join its run
  config.request_timeout_s = 900  # a request not done by then is given up (the page says so)
  config.warm_up = True  # compile every batch size before serving
  config.sample_faces = 6  # world faces (test split, never trained on) offered instead of a photo
  config.host = "127.0.0.1"  # 0.0.0.0 serves the whole network: only behind your own proxy
  config.port = 7860
  config.share = False  # a public gradio.live link: off unless asked for
  config.max_upload_mb = 10
  config.max_photo_pixels = 40_000_000  # refused before decoding
  config.min_photo_side = 64
  config.files_ttl_s = 3600  # each session's files are removed this long after they were made
  return config
