"""Start the app: the warm service, the world faces it offers, the page, and a safe launch.

running = start_app(config)          # config: configs/app.py's; blocks unless block=False
running.url; running.close()
"""

import dataclasses
import logging
import tempfile

import gradio as gr
import ml_collections

from hdb_jax.app.files import SessionFiles
from hdb_jax.app.ui import build_app
from hdb_jax.errors import ConfigError
from hdb_jax.serve.personalizer import Personalizer
from hdb_jax.serve.service import PersonalizationService
from hdb_jax.world.truth.sampling import split_identities
from hdb_jax.world.truth.source import save_photos

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclasses.dataclass
class RunningApp:
  """A launched app: its page, service, session files and URL."""

  app: gr.Blocks
  service: PersonalizationService
  files: SessionFiles
  url: str

  def close(self) -> None:
    self.app.close()
    self.service.close()
    self.files.close()


def world_faces(count: int, resolution: int) -> dict[str, bytes]:
  """{'world face <id>': PNG bytes} of `count` test-split world identities (never trained on)."""
  if count <= 0:
    return {}
  identities = split_identities("test", count)
  faces = {}
  with tempfile.TemporaryDirectory() as tmp:
    for identity, path in zip(identities, save_photos(tmp, identities, resolution)):
      with open(path, "rb") as f:
        faces[f"world face {identity}"] = f.read()
  return faces


def start_app(config: ml_collections.ConfigDict, block: bool = True) -> RunningApp:
  """Loads and (config.warm_up) compiles the service, then serves the page on config.host:port."""
  if config.share:
    logging.warning("config.share=True: a public gradio.live link will reach this machine")
  if config.host not in LOCAL_HOSTS:
    logging.warning("serving on %s: anyone who can reach this host can use the app", config.host)
  if config.max_upload_mb <= 0 or config.files_ttl_s <= 0:
    raise ConfigError("max_upload_mb and files_ttl_s must be positive")
  personalizer = Personalizer(config)
  if config.warm_up:
    logging.info("compiling batch sizes %s (once; then requests do not compile)",
                 tuple(config.batch_sizes))  # fmt: skip
    personalizer.warm_up()
  service = PersonalizationService(personalizer)
  files = SessionFiles(config.files_ttl_s)
  faces = world_faces(config.sample_faces, personalizer.resolution)
  app = build_app(service, files, faces)
  app.queue(default_concurrency_limit=personalizer.max_batch)
  _, url, _ = app.launch(
    server_name=config.host,
    server_port=config.port or None,
    share=config.share,
    max_file_size=f"{config.max_upload_mb}mb",
    prevent_thread_lock=True,
    show_error=False,
    quiet=True,
  )
  running = RunningApp(app, service, files, url)
  logging.info("the app is at %s", url)
  print(f"hdb_jax app: {url}", flush=True)
  if block:
    try:
      app.block_thread()
    finally:
      running.close()
  return running
