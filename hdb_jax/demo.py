"""The offline end-to-end demo on the tiny model: every phase, then a report.

  python -m hdb_jax.demo --workdir=/tmp/hdb_demo

Phase 0 on procedural faces -> Phase 1 (hypernetwork, one face held out) -> personalize the real photo
scikit-image ships (the astronaut) and the held-out face in one batch (prediction + rank-relaxed
finetune) -> samples -> PyTorch LoRA export and hypernetwork export -> evaluation (full method, Only
Hyper, No Hyper) -> WORKDIR/report.html. A few minutes on 2 CPU cores, most of it compiling (a rerun
reuses the compiled programs). The tiny model has random weights, so its images are noise: the losses,
sizes and timings are what mean something.
"""

import contextlib
import json
import os
import time
from typing import Iterator

import numpy as np
from absl import flags
from PIL import Image

from hdb_jax import adapters, models
from hdb_jax.cli import run_main
from hdb_jax.config_defaults import load_repo_config

flags.DEFINE_string("workdir", "/tmp/hdb_demo", "Where everything is written.")
flags.DEFINE_integer("identities", 6, "Procedural training faces for Phase 0 (one is held out of Phase 1).")
flags.DEFINE_integer("hyper_steps", 100, "Hypernetwork training steps.")
flags.DEFINE_integer("finetune_steps", 20, "Rank-relaxed finetune steps per photo.")
flags.DEFINE_bool("evaluate", True, "Run hdb_jax.evaluate on the personalized photos.")
flags.DEFINE_string("methods", "full,only_hyper,no_hyper", "The evaluation's methods (see hdb_jax.evaluate).")
flags.DEFINE_string("pretrained", "tiny", "Base model of every phase (tiny[:DIR], a diffusers directory or hub id).")
FLAGS = flags.FLAGS


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


@contextlib.contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
  """timings[name] = seconds spent in the block."""
  start = time.perf_counter()
  yield
  timings[name] = time.perf_counter() - start


def run_phases(workdir: str, timings: dict[str, float]) -> dict:
  """Every phase in order; returns what the report needs."""
  # pylint: disable=import-outside-toplevel
  from hdb_jax.export.hypernet import export_hypernet
  from hdb_jax.generate import save_png
  from hdb_jax.hypernet.loop import first_images, split_identities, train
  from hdb_jax.personalize import personalize
  from hdb_jax.preoptimize import preoptimize
  with timed(timings, "phase 0: pre-optimize"):
    phase0 = load_repo_config("lidb", "tiny")
    phase0.pretrained = FLAGS.pretrained
    phase0.num_identities = phase0.data.num_identities = phase0.identities_per_step = FLAGS.identities
    dataset = preoptimize(phase0, os.path.join(workdir, "phase0"))
  with timed(timings, "phase 1: train the hypernetwork"):
    hyper = load_repo_config("hyper", "tiny")
    hyper.weights, hyper.pretrained = dataset.directory, FLAGS.pretrained
    hyper.data.num_identities = FLAGS.identities
    hyper.steps = hyper.checkpoint_every = hyper.eval.every = FLAGS.hyper_steps
    hyper.eval.num_identities, hyper.eval.samples = 1, False  # the held-out face's samples come in Phase 2
    hyper_dir = os.path.join(workdir, "hyper")
    train(hyper, hyper_dir)
  _, (held_out,) = split_identities(sorted(dataset.identity_ids()), 1)
  held_out_photo = os.path.join(workdir, "held_out_face.png")
  save_png(held_out_photo, np.uint8(np.round((first_images(hyper, [held_out], 64)[0] + 1) * 127.5)))
  photos = [demo_photo(os.path.join(workdir, "astronaut.png")), held_out_photo]
  with timed(timings, "phase 2: personalize 2 photos (+ samples, export)"):
    config = load_repo_config("personalize", "tiny")
    config.pretrained = FLAGS.pretrained
    config.images, config.hypernet, config.steps, config.overwrite = ",".join(photos), hyper_dir, \
        FLAGS.finetune_steps, True
    outputs = personalize(config, os.path.join(workdir, "personalized"))
  with timed(timings, "export the hypernetwork"):
    export_hypernet(hyper_dir, os.path.join(workdir, "hypernet_export"), overwrite=True)
  results = None
  if FLAGS.evaluate:
    from hdb_jax.evaluate import evaluate
    with timed(timings, f"evaluate: {FLAGS.methods}"):
      econfig = load_repo_config("evaluate", "tiny")
      econfig.pretrained = FLAGS.pretrained
      econfig.images, econfig.hypernet, econfig.steps, econfig.overwrite = ",".join(photos), hyper_dir, \
          FLAGS.finetune_steps, True
      econfig.methods, econfig.identities_per_batch = FLAGS.methods, 2
      results = evaluate(econfig, os.path.join(workdir, "evaluation"))
  return {"dataset": dataset, "hyper_dir": hyper_dir, "outputs": outputs, "photos": photos,
          "held_out": held_out, "evaluation": results}


def write_report(workdir: str, done: dict, timings: dict[str, float]) -> str:
  """WORKDIR/report.html from the phases' outputs."""
  # pylint: disable=import-outside-toplevel
  from hdb_jax import demo_report as page
  from hdb_jax.evaluation import report
  from hdb_jax.hypernet.metrics_log import read_metrics
  dataset, sections = done["dataset"], []
  losses = dataset.final_losses()
  sections.append(("Phase 0: one LiDB per training face", page.table(
      ["identity", "final diffusion loss"], [[k, f"{v:.4f}"] for k, v in sorted(losses.items())])))
  metrics = read_metrics(done["hyper_dir"])
  train_rows = [m for m in metrics if "loss" in m]
  evals = [m for m in metrics if "eval_weight_loss" in m]
  curves = page.svg_plot({k: [m[k] for m in train_rows] for k in ("loss", "diffusion_loss", "weight_loss")},
                         "Phase 1 training losses (logged every 10 steps)")
  held = "".join(f"<p>held-out face {done['held_out']}: weight loss {m['eval_weight_loss']:.4f}, diffusion loss "
                 f"{m['eval_diffusion_loss']:.4f} (step {m['step']})</p>" for m in evals)
  sections.append(("Phase 1: the hypernetwork", curves + held))
  rows, inner = [], ""
  for photo, out in zip(done["photos"], done["outputs"]):
    record = json.load(open(os.path.join(out, "record.json"), encoding="utf-8"))
    curve = np.asarray(record["losses"])
    inner += page.svg_plot({"finetune loss": curve.tolist()}, f"{os.path.basename(photo)}: rank-relaxed finetune")
    inner += page.image(photo, workdir, "photo") + page.image(os.path.join(out, "samples", "grid.png"), workdir,
                                                                 "samples")
    rows.append([os.path.basename(photo), f"{curve[0]:.4f} -> {curve[-1]:.4f}", f"{record['identity_bytes']:,}",
                 f"{os.path.getsize(os.path.join(out, 'export', 'diffusers', 'pytorch_lora_weights.safetensors')):,}"])
  sections.append(("Phase 2: personalized photos", page.table(
      ["photo", "finetune loss first -> last", "identity file (bytes)", "diffusers LoRA (bytes)"], rows) + inner))
  if done["evaluation"] is not None:
    header, summary = report.summary_rows(done["evaluation"])
    sections.append(("Evaluation (tiny random CLIP/DINO: scores show the plumbing, not quality)",
                     page.table(header, summary) + '<p><a href="evaluation/report.html">full evaluation report</a></p>'))
  export = os.path.join(workdir, "hypernet_export", "hypernet.safetensors")
  count = adapters.count_from_configs(models.configs.SD15_UNET, models.configs.SD15_TEXT_ENCODER)
  sections.append(("Sizes", page.table(["what", "bytes"], [["hypernetwork export (tiny)", f"{os.path.getsize(export):,}"]])
                   + f"<pre>Stable Diffusion 1.5, counted from its config:\n{count.table()}</pre>"))
  sections.append(("Timings (2-core CPU: mostly compiling)", page.table(
      ["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in timings.items()])))
  path = os.path.join(workdir, "report.html")
  from hdb_jax.fileio import write_text_atomic  # pylint: disable=import-outside-toplevel
  write_text_atomic(path, page.render("hdb_jax demo: every phase on the tiny model", sections))
  return path


def main(argv: list[str]) -> None:
  del argv
  workdir = FLAGS.workdir
  os.makedirs(workdir, exist_ok=True)
  timings: dict[str, float] = {}
  done = run_phases(workdir, timings)
  path = write_report(workdir, done, timings)
  print("\nhdb_jax demo (tiny random model: its images are noise; the numbers are real)")
  for name, seconds in timings.items():
    print(f"  {name}: {seconds:.1f} s")
  for out in done["outputs"]:
    print(f"  identity: {out}/identity.safetensors ({os.path.getsize(os.path.join(out, 'identity.safetensors')):,} "
          f"bytes), samples: {out}/samples/grid.png, PyTorch LoRA: {out}/export/diffusers/")
  print(f"  report: {path}")


if __name__ == "__main__":
  run_main(main)
