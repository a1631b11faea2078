"""The offline end-to-end demo on the tiny model: every phase, then a report.

  python -m hdb_jax.demo --workdir=/tmp/hdb_demo

Phase 0 on procedural faces -> Phase 1 (hypernetwork, one face held out) -> personalize the real
photo scikit-image ships (the astronaut) and the held-out face in one batch (prediction +
rank-relaxed finetune) -> samples -> PyTorch LoRA export and hypernetwork export -> evaluation (full
method, Only Hyper, No Hyper) -> WORKDIR/report.html. A few minutes on 2 CPU cores, most of it
compiling (a rerun reuses the compiled programs). The tiny model has random weights, so its images
are noise: the losses, sizes and timings are what mean something.
"""

import dataclasses
import os

from absl import flags

from hdb_jax.demo.page import write_report
from hdb_jax.demo.run import DemoSettings, run_phases
from hdb_jax.runtime.cli import run_main

DEFAULTS = DemoSettings()
flags.DEFINE_string("workdir", "/tmp/hdb_demo", "Where everything is written.")
flags.DEFINE_integer(
  "identities",
  DEFAULTS.identities,
  "Procedural training faces for Phase 0 (one is held out of Phase 1).",
  lower_bound=2,
)
flags.DEFINE_integer(
  "hyper_steps", DEFAULTS.hyper_steps, "Hypernetwork training steps.", lower_bound=1
)
flags.DEFINE_integer(
  "finetune_steps", DEFAULTS.finetune_steps, "Rank-relaxed finetune steps per photo.", lower_bound=0
)
flags.DEFINE_bool("evaluate", DEFAULTS.evaluate, "Run hdb_jax.evaluate on the personalized photos.")
flags.DEFINE_string(
  "methods", DEFAULTS.methods, "The evaluation's methods (see hdb_jax/evaluate/methods.py)."
)
flags.DEFINE_string(
  "pretrained",
  DEFAULTS.pretrained,
  "Base model of every phase (tiny[:DIR], a diffusers directory or hub id).",
)
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
  del argv
  workdir = FLAGS.workdir
  os.makedirs(workdir, exist_ok=True)
  timings: dict[str, float] = {}
  # every DemoSettings field is the flag of the same name
  settings = DemoSettings(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(DemoSettings)})
  done = run_phases(workdir, settings, timings)
  path = write_report(workdir, done, timings)
  print("\nhdb_jax demo (tiny random model: its images are noise; the numbers are real)")
  for name, seconds in timings.items():
    print(f"  {name}: {seconds:.1f} s")
  for out in done["outputs"]:
    print(
      f"  identity: {out}/identity.safetensors "
      f"({os.path.getsize(os.path.join(out, 'identity.safetensors')):,} "
      f"bytes), samples: {out}/samples/grid.png, PyTorch LoRA: {out}/export/diffusers/"
    )
  print(f"  report: {path}")


if __name__ == "__main__":
  run_main(main)
