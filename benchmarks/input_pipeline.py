"""Input pipeline throughput (images/s) of the synthetic, folder and tfds sources.

    nice python benchmarks/input_pipeline.py                 # 512 px, 2 workers, batches of 8
    python benchmarks/input_pipeline.py --resolution=256 --num_workers=4 --sources=folder

Makes its own data in a temp dir: `--num_files` face photos (synthetic faces with sensor-like noise,
so they compress like photos) as 1024 px JPEGs for `folder:` (a typical photo folder), and as 512 px
PNGs packed into the TFDS dataset `hdb_image_folder` for `tfds:` (the format of celeb_a_hq/512).
Each source is timed over `--batches` batches after one warm-up batch (which starts the workers and,
for tfds, tf.data). Takes about a minute on 2 CPU cores; prints a markdown table.
"""

import os
import tempfile
import time

import numpy as np
from absl import app, flags
from PIL import Image

from hdb_jax import data
from hdb_jax.config.pieces import data_config
from hdb_jax.world.truth.source import synthetic_face

FLAGS = flags.FLAGS
flags.DEFINE_integer("resolution", 512, "model input side in pixels")
flags.DEFINE_integer("batch_size", 8, "images per batch")
flags.DEFINE_integer("batches", 12, "timed batches per source")
flags.DEFINE_integer("num_workers", 2, "decoding threads")
flags.DEFINE_integer("num_files", 48, "photos written for the folder and tfds sources")
flags.DEFINE_list("sources", ["synthetic", "folder", "tfds"], "which sources to time")
flags.DEFINE_bool("augment", False, "time with flip + colour jitter on")


def _photo(index: int, size: int) -> Image.Image:
  """A synthetic face with noise: compresses (and decodes) like a photo, unlike the flat drawing."""
  face = synthetic_face(index // 2, index % 2, 1, size)
  noise = np.random.default_rng(index).normal(0, 6, face.shape)
  return Image.fromarray(np.clip(face + noise, 0, 255).astype(np.uint8))


def _write_files(root: str, count: int, size: int, ext: str) -> float:
  """Writes `count` photos; returns their mean size in KB."""
  total = 0
  for i in range(count):
    path = os.path.join(root, f"person{i // 2:03d}", f"{i % 2}.{ext}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _photo(i, size).save(path, **({"quality": 90} if ext == "jpg" else {}))
    total += os.path.getsize(path)
  return total / count / 1024


def _time(config, source) -> tuple[float, float]:
  """(images/s, ms per batch) over FLAGS.batches batches after a warm-up batch."""
  with data.make_iterator(
    config,
    FLAGS.batch_size,
    FLAGS.resolution,
    process_index=0,
    process_count=1,
    seed=0,
    source=source,
  ) as batches:
    next(batches)
    start = time.perf_counter()
    for _ in range(FLAGS.batches):
      batch = next(batches)
    elapsed = time.perf_counter() - start
    assert batch["image"].shape == (FLAGS.batch_size, FLAGS.resolution, FLAGS.resolution, 3)
  return FLAGS.batches * FLAGS.batch_size / elapsed, 1000 * elapsed / FLAGS.batches


def run() -> list[tuple[str, str, float, float]]:
  """Times each source; rows (source, what it reads, images/s, ms/batch)."""
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for name in FLAGS.sources:
      config = data_config()
      config.num_workers, config.augment = FLAGS.num_workers, FLAGS.augment
      if name == "synthetic":
        config.num_identities, config.views_per_identity = 64, 4
        what = f"procedural faces drawn at {FLAGS.resolution} px"
      elif name == "folder":
        kb = _write_files(os.path.join(tmp, "jpg"), FLAGS.num_files, 1024, "jpg")
        config.source = f"folder:{os.path.join(tmp, 'jpg')}"
        what = f"{FLAGS.num_files} JPEGs 1024 px (~{kb:.0f} KB)"
      elif name == "tfds":
        import hdb_jax.data.tfds_folder  # noqa: F401  (registers the builder)

        kb = _write_files(os.path.join(tmp, "png"), FLAGS.num_files, 512, "png")
        config.source, config.prepare = "tfds:hdb_image_folder", True
        config.manual_dir, config.data_dir = os.path.join(tmp, "png"), os.path.join(tmp, "tfds")
        what = f"{FLAGS.num_files} PNGs 512 px (~{kb:.0f} KB) in TFDS records"
      else:
        raise app.UsageError(f"unknown source {name!r}")
      source = data.make_source(config)
      images_per_s, ms = _time(config, source)
      rows.append((name, what, images_per_s, ms))
  return rows


def main(argv):
  del argv
  rows = run()
  print(
    f"\ninput pipeline, {FLAGS.resolution} px, batch {FLAGS.batch_size}, {FLAGS.num_workers} "
    "workers, "
    f"augment={FLAGS.augment}, {os.cpu_count()} CPUs"
  )
  print("| source | reads | images/s | ms/batch |")
  print("|---|---|---:|---:|")
  for name, what, images_per_s, ms in rows:
    print(f"| {name} | {what} | {images_per_s:.1f} | {ms:.0f} |")


if __name__ == "__main__":
  app.run(main)
