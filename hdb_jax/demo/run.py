"""The demo's phases on the tiny offline model: Phase 0, Phase 1, personalization, exports,
evaluation.

Every phase runs through its library call with its package config (hdb_jax.config.phases, the
same configs configs/*.py give) at the tiny variant, adjusted by `DemoSettings`.
"""

import contextlib
import dataclasses
import os
import time
from typing import Any, Iterator

import numpy as np
from PIL import Image

from hdb_jax import data, models
from hdb_jax.config import phases
from hdb_jax.evaluate.loop import evaluate
from hdb_jax.formats.hypernet_export import export_hypernet
from hdb_jax.io.images import save_png
from hdb_jax.personalize.loop import personalize
from hdb_jax.preoptimize.loop import preoptimize
from hdb_jax.train.loop import train


@dataclasses.dataclass(frozen=True)
class DemoSettings:
  """What the demo's flags set (python -m hdb_jax.demo --help)."""

  identities: int = 6  # procedural training faces for Phase 0 (one is held out of Phase 1)
  hyper_steps: int = 100  # hypernetwork training steps
  finetune_steps: int = 20  # rank-relaxed finetune steps per photo
  evaluate: bool = True  # run the evaluation on the personalized photos
  methods: str = (
    "full,only_hyper,no_hyper"  # the evaluation's methods (hdb_jax/evaluate/methods.py)
  )
  pretrained: str = (
    "tiny"  # base model of every phase (tiny[:DIR], a diffusers directory or hub id)
  )


def demo_photo(path: str) -> str:
  """The scikit-image astronaut (a real face photo shipped with the package), or a procedural
  face."""
  try:
    import skimage.data  # pylint: disable=import-outside-toplevel

    image = skimage.data.astronaut()
  except ImportError:
    from hdb_jax.data import synthetic

    image = synthetic.render_face(synthetic.identity_params(123, 0), 0, 256)
  Image.fromarray(image).save(path)
  return path


@contextlib.contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
  """timings[name] = seconds spent in the block."""
  start = time.perf_counter()
  yield
  timings[name] = time.perf_counter() - start


def _on_photos(config: Any, settings: DemoSettings, photos: list[str], hyper_dir: str) -> Any:
  """A Phase 2 config (personalize or evaluate) set to the demo's photos, model and hypernetwork."""
  config.pretrained, config.hypernet = settings.pretrained, hyper_dir
  config.images, config.steps, config.overwrite = ",".join(photos), settings.finetune_steps, True
  return config


def run_phases(workdir: str, settings: DemoSettings, timings: dict[str, float]) -> dict[str, Any]:
  """Every phase in order, into WORKDIR/{phase0,hyper,personalized,hypernet_export,evaluation};
  returns what the report needs."""
  with timed(timings, "phase 0: pre-optimize"):
    phase0 = phases.preoptimize_config("tiny")
    phase0.pretrained = settings.pretrained
    phase0.num_identities = phase0.data.num_identities = phase0.identities_per_step = (
      settings.identities
    )
    dataset = preoptimize(phase0, os.path.join(workdir, "phase0"))
  with timed(timings, "phase 1: train the hypernetwork"):
    hyper = phases.hyper_config("tiny")
    hyper.weights, hyper.pretrained = dataset.directory, settings.pretrained
    hyper.data.num_identities = settings.identities
    hyper.steps = hyper.checkpoint_every = hyper.eval.every = settings.hyper_steps
    # the held-out face's samples come in Phase 2
    hyper.eval.num_identities, hyper.eval.samples = (
      1,
      False,
    )
    hyper_dir = os.path.join(workdir, "hyper")
    train(hyper, hyper_dir)
  _, (held_out,) = data.split_identities(sorted(dataset.identity_ids()), 1)
  held_out_photo = os.path.join(workdir, "held_out_face.png")
  face = data.identity_images(hyper.data, [held_out], models.configs.TINY_RESOLUTION, hyper.seed)[0]
  save_png(held_out_photo, np.uint8(np.round((face + 1) * 127.5)))
  photos = [demo_photo(os.path.join(workdir, "astronaut.png")), held_out_photo]
  with timed(timings, "phase 2: personalize 2 photos (+ samples, export)"):
    config = _on_photos(phases.personalize_config("tiny"), settings, photos, hyper_dir)
    outputs = personalize(config, os.path.join(workdir, "personalized"))
  with timed(timings, "export the hypernetwork"):
    export_hypernet(hyper_dir, os.path.join(workdir, "hypernet_export"), overwrite=True)
  results = None
  if settings.evaluate:
    with timed(timings, f"evaluate: {settings.methods}"):
      econfig = _on_photos(phases.evaluate_config("tiny"), settings, photos, hyper_dir)
      econfig.methods, econfig.identities_per_batch = settings.methods, 2
      results = evaluate(econfig, os.path.join(workdir, "evaluation"))
  return {
    "dataset": dataset,
    "hyper_dir": hyper_dir,
    "outputs": outputs,
    "photos": photos,
    "held_out": held_out,
    "evaluation": results,
  }
