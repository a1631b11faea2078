"""The offline end-to-end demo on the tiny model: Phase 0 -> personalize a real photo -> generate -> export.

  python -m hdb_jax.demo --workdir=/tmp/hdb_demo

Runs in a few minutes on 2 CPU cores (most of it compiling). The tiny model has random weights, so
its images are noise: the figures that mean something are the losses, sizes and timings printed at
the end. The hypernetwork phase (Phase 1) is not part of this release yet.
"""

import json
import os
import time

import numpy as np
from absl import flags
from PIL import Image

from hdb_jax import adapters, models
from hdb_jax.cli import run_main
from hdb_jax.config_defaults import load_repo_config

flags.DEFINE_string("workdir", "/tmp/hdb_demo", "Where everything is written.")
flags.DEFINE_integer("identities", 4, "Procedural training faces for Phase 0.")

def _load_config(name: str):
  return load_repo_config(name, "tiny")


def demo_photo(path: str) -> str:
  """The scikit-image astronaut (a real face photo shipped with the package), or a procedural face."""
  try:
    import skimage.data  # pylint: disable=import-outside-toplevel
    image = skimage.data.astronaut()
  except ImportError:
    from hdb_jax.data import synthetic  # pylint: disable=import-outside-toplevel
    image = synthetic.render_face(synthetic.identity_params(123, 0), 0, 256)
  Image.fromarray(image).save(path)
  return path


def main(argv: list[str]) -> None:
  del argv
  from hdb_jax.personalize import personalize  # pylint: disable=import-outside-toplevel
  from hdb_jax.preoptimize import preoptimize  # pylint: disable=import-outside-toplevel
  workdir = flags.FLAGS.workdir
  os.makedirs(workdir, exist_ok=True)
  timings = {}
  start = time.perf_counter()
  lidb_config = _load_config("lidb")
  lidb_config.num_identities = lidb_config.data.num_identities = flags.FLAGS.identities
  lidb_config.identities_per_step = flags.FLAGS.identities
  dataset = preoptimize(lidb_config, os.path.join(workdir, "phase0"))
  timings["phase 0 (pre-optimize)"] = time.perf_counter() - start

  start = time.perf_counter()
  config = _load_config("personalize")
  config.image = demo_photo(os.path.join(workdir, "photo.png"))
  config.overwrite = True
  (out,) = personalize(config, os.path.join(workdir, "me"))
  timings["phase 2 (personalize + samples + export)"] = time.perf_counter() - start
  record = json.load(open(os.path.join(out, "record.json"), encoding="utf-8"))

  count = adapters.count_from_configs(models.configs.SD15_UNET, models.configs.SD15_TEXT_ENCODER)
  losses = record["losses"]
  print("\nhdb_jax demo (tiny random model: its images are noise; the numbers below are real)")
  print(f"  phase 0: {len(dataset.identity_ids())} identities, mean final loss "
        f"{np.mean(list(dataset.final_losses().values())):.4f}")
  print(f"  personalize: loss {np.mean(losses[:5]):.4f} (first 5 steps) -> {np.mean(losses[-5:]):.4f} (last 5)")
  print(f"  identity file: {record['identity_bytes']:,} bytes ({out}/identity.safetensors)")
  print(f"  samples: {out}/samples/grid.png   PyTorch LoRA: {out}/export/diffusers/")
  for name, seconds in timings.items():
    print(f"  {name}: {seconds:.1f} s")
  for name, seconds in record["timings_s"].items():
    print(f"    {name}: {seconds:.2f}")
  print("  Stable Diffusion 1.5 (counted from its config):")
  print("    " + count.table().replace("\n", "\n    "))


if __name__ == "__main__":
  run_main(main)
