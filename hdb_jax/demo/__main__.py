"""The offline end-to-end demo on the world model: training works, personalization works, measured.

  python -m hdb_jax.demo --workdir=/tmp/hdb_demo

On the world (hdb_jax.world: a small Stable Diffusion of procedural 64 px faces this project
trained and ships, and a recognizer that knows the world's ground truth):
a short Phase 0 (4 world faces) and Phase 1 (one face held out) to show training runs and its
losses fall -> Phase 2 with a hypernetwork (--hypernet) and the rank-relaxed fast finetune on 3
held-out world faces and the real photo scikit-image ships (the astronaut, out of the
world's domain), in one batch -> samples, identity files, PyTorch LoRA and hypernetwork exports ->
evaluation of the world faces (base model, Only Hyper, Hyper + fast finetune) by World-judge (the
judge's identity score, shown first), World-ID and World-prompt -> WORKDIR/report.html.

Under 5 minutes on 2 CPU cores with an empty compile cache, 60% of it compiling (measured on world
v1: 4.9 min, with a training run sharing the 2 cores); a rerun loads the compiled programs from
~/.cache/hdb_jax/jax_cache (or $HDB_JAX_CACHE) and takes under 2 minutes (world v2, its own Phase 1:
100 s, 59 s of it compiling).
--hypernet=auto (the default) uses the shipped world hypernetwork when this installation has one,
and otherwise (said in the log and the report) this run's own short Phase 1, as --hypernet=phase1
does; or give a Phase 1 WORKDIR or export directory.
"""

import dataclasses
import os

from absl import flags

from hdb_jax.demo.page import write_report
from hdb_jax.demo.run import DemoSettings, StageTimer, run_phases
from hdb_jax.runtime.cli import run_main

DEFAULTS = DemoSettings()
DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, str: flags.DEFINE_string}
flags.DEFINE_string("workdir", "/tmp/hdb_demo", "Where everything is written.")
for _field in dataclasses.fields(DemoSettings):  # every DemoSettings field is the flag of its name
  _default = getattr(DEFAULTS, _field.name)
  _bound = _field.metadata["lower_bound"]
  _bounds = {} if _bound is None else {"lower_bound": _bound}
  DEFINE[type(_default)](_field.name, _default, _field.metadata["help"], **_bounds)
FLAGS = flags.FLAGS


def compile_faster() -> None:
  """XLA at LLVM optimization level 0 (unless XLA_FLAGS names a level), before JAX starts its
  backend: the demo is mostly compiling on a CPU, and level 0 halves that for slower but short runs
  (the demo at a few steps each, cold, on 2 shared cores: 379 s -> 176 s; tests/conftest.py does
  the same)."""
  flags_now = os.environ.get("XLA_FLAGS", "")
  if "--xla_backend_optimization_level" not in flags_now:
    os.environ["XLA_FLAGS"] = f"{flags_now} --xla_backend_optimization_level=0".strip()


def main(argv: list[str]) -> None:
  del argv
  compile_faster()
  workdir = FLAGS.workdir
  os.makedirs(workdir, exist_ok=True)
  settings = DemoSettings(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(DemoSettings)})
  with StageTimer() as timer:
    done = run_phases(workdir, settings, timer)
  path = write_report(workdir, done, timer)
  print(f"\nhdb_jax demo on the world model (hypernetwork: {done.settings.hypernet})")
  for name, seconds in timer.seconds.items():
    print(f"  {name}: {seconds:.1f} s ({timer.compiling[name]:.1f} s compiling)")
  total, compiling = sum(timer.seconds.values()), sum(timer.compiling.values())
  print(f"  total: {total:.1f} s ({compiling:.1f} s compiling)")
  for out in done.outputs:
    print(
      f"  identity: {out}/identity.safetensors "
      f"({os.path.getsize(os.path.join(out, 'identity.safetensors')):,} bytes), "
      f"samples: {out}/samples/grid.png, PyTorch LoRA: {out}/export/diffusers/"
    )
  print(f"  report: {path}")


if __name__ == "__main__":
  run_main(main)
