"""The paper's Tables 1 and 3 on the world, and the two rank relaxations side by side.

  python benchmarks/world_tables.py --workdir=/tmp/world_tables               # test split, 32 ids
  python benchmarks/world_tables.py --workdir=/tmp/world_tune --split=validation --tune \\
      --learning_rates=3e-4,1e-3,3e-3 --step_counts=20,40,80

Held-out world identities (never seen by the world model, the recognizer or the hypernetwork; the
test split from id 1,000,000, the validation split from 1,500,000) are rendered as photos in the
default scene, then `python -m hdb_jax.evaluate --config=configs/evaluate.py:world` runs every
method on them with the world prompts, scored by World-ID (identity similarity to the photo) and
World-prompt (the prompted context and style read back), means with 95% bootstrap intervals over
identities, and personalization seconds per identity. Rows:

  Table 1  ours (hypernetwork + fast finetune) vs DreamBooth-style LoRA from scratch at 40, 200, 400
  Table 3  the base model, No Hyper, Only Hyper, Hyper + fast finetune, k=1, at equal steps
  Relaxations  LoRA (the paper's) vs LiDB (compact) on top of the same prediction, equal steps

`--tune` instead runs only the full method over a grid (learning rate x steps, on --split, which
should be 'validation') and prints it sorted by World-ID. Results stay in WORKDIR (results.json,
report.html per run); a finished run is reused on a rerun, so the tables can be reprinted.
"""

import json
import os
import sys

import numpy as np
from absl import app, flags
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
from hdb_jax import adapters
from hdb_jax.config import phases
from hdb_jax.diffusion.base import setup_base_model
from hdb_jax.evaluate.loop import evaluate
from hdb_jax.evaluate.report import markdown_table
from hdb_jax.io.images import image_grid, save_png
from hdb_jax.runtime.cli import quiet_orbax
from hdb_jax.world.truth.sampling import split_identities
from hdb_jax.world.truth.source import save_photos

flags.DEFINE_string("workdir", "/tmp/world_tables", "Photos, evaluation runs and the tables.")
flags.DEFINE_string("hypernet", "world", "Hypernetwork: 'world' (shipped), a WORKDIR or export.")
flags.DEFINE_string("pretrained", "world", "Base model: 'world' (shipped) or a directory.")
flags.DEFINE_enum("split", "test", ["test", "validation"], "Held-out identities to use.")
flags.DEFINE_integer("identities", 32, "Held-out identities.", lower_bound=1)
flags.DEFINE_integer("num_samples", 2, "Samples per identity and prompt.", lower_bound=1)
flags.DEFINE_integer("steps", None, "Fast-finetune steps (default: the config's).")
flags.DEFINE_float("learning_rate", None, "Fast-finetune learning rate (default: the config's).")
flags.DEFINE_integer("lora_rank", None, "r' of both relaxations (default: the config's).")
flags.DEFINE_list("lora_steps", ["40", "200", "400"], "Table 1: DreamBooth LoRA step counts.")
flags.DEFINE_string("prompts", "world", "Prompt set or 'p1|p2' (world grammar, with {token}).")
flags.DEFINE_integer("sample_steps", None, "Sampling steps (default: the config's, 25).")
GROUPS = ["base", "baselines", "hyper", "lidb_relaxation"]
flags.DEFINE_list("groups", GROUPS, "The runs to make and show (baselines: no hypernetwork).")
flags.DEFINE_string("figure", None, "Also write this PNG: held-out photos -> the full method's "
                    "images in several contexts and styles (the README's picture).")  # fmt: skip
flags.DEFINE_bool("tune", False, "Grid over learning rate x steps for the full method instead.")
flags.DEFINE_list("learning_rates", ["3e-4", "1e-3", "3e-3"], "--tune: learning rates.")
flags.DEFINE_list("step_counts", ["20", "40", "80"], "--tune: finetune step counts.")
flags.DEFINE_enum("relaxation", "lora", ["lora", "lidb"], "--tune: the relaxation tuned.")
FLAGS = flags.FLAGS

METRICS = ["world_id", "world_prompt"]
TABLE3 = [
  ("base model (no identity)", "base"),
  ("No Hyper", "no_hyper"),
  ("Only Hyper", "only_hyper"),
  ("Hyper + fast finetune", "full"),
  ("k=1 + fast finetune", "k1"),
]


def run(name: str, photos: str, **overrides) -> dict:
  """One evaluation into WORKDIR/<name> (reused when its results.json exists)."""
  out = os.path.join(FLAGS.workdir, name)
  path = os.path.join(out, "results.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  config = phases.evaluate_config("world")
  config.images, config.pretrained, config.hypernet = photos, FLAGS.pretrained, FLAGS.hypernet
  config.num_samples, config.prompts = FLAGS.num_samples, FLAGS.prompts
  for key, value in (
    ("steps", FLAGS.steps),
    ("optim.learning_rate", FLAGS.learning_rate),
    ("lora_rank", FLAGS.lora_rank),
    ("sample_steps", FLAGS.sample_steps),
  ):
    if value is not None:
      overrides.setdefault(key, value)
  config.update_from_flattened_dict(overrides)  # dotted keys, e.g. 'optim.learning_rate'
  return evaluate(config, out)


def identity_kilobytes(rank: int) -> tuple[float, float]:
  """fp32 KB of a personalized identity's numbers on the base model: (LiDB + rank-r' LoRA, one LiDB
  of rank 1 + r')."""
  config = phases.personalization_config("world")
  config.pretrained = FLAGS.pretrained
  base = setup_base_model(config)
  lidb = adapters.lidb_size(base.layers, base.lidb_config)
  lora = adapters.lora_size(base.layers, rank)
  return 4 * (lidb + lora) / 1000, 4 * lidb * (1 + rank) / 1000


RELAXATIONS = [("LoRA relaxation (paper)", "full"), ("LiDB relaxation (compact)", "full/lidb")]


def groups() -> dict[str, tuple[str, dict]]:
  """The evaluation runs the tables merge: name -> (methods, config overrides). Each is its own
  WORKDIR/<name>, so the runs without a hypernetwork can go first (--groups)."""
  baselines = ",".join(["no_hyper"] + [f"lora@{n}" for n in FLAGS.lora_steps])
  return {
    "base": ("base", {}),
    "baselines": (baselines, {}),
    "hyper": ("full,only_hyper,k1", {"relaxation": "lora"}),  # the paper's relaxation
    "lidb_relaxation": ("full", {"relaxation": "lidb"}),
  }


def tables(photos: str) -> str:
  unknown = set(FLAGS.groups) - set(groups())
  if unknown or not FLAGS.groups:
    raise app.UsageError(f"--groups: name some of {', '.join(groups())}")
  runs = {name: run(name, photos, methods=m, **o) for name, (m, o) in groups().items()
          if name in FLAGS.groups}  # fmt: skip
  methods = {}
  for name, results in runs.items():
    for method, entry in results["methods"].items():
      methods["full/lidb" if name == "lidb_relaxation" else method] = entry
  merged = {**next(iter(runs.values())), "methods": methods}
  baselines = [(f"DreamBooth LoRA, {n} steps", f"lora@{n}") for n in FLAGS.lora_steps]
  sections = [
    ("Table 1: ours vs DreamBooth-style LoRA from scratch", [("Ours (hypernetwork + fast "
                                                                "finetune)", "full")] + baselines),
    ("Table 3: ablation at equal steps ({steps})", TABLE3),
    ("Rank relaxations (r' = {rank}) on top of the same prediction", RELAXATIONS),
  ]  # fmt: skip
  n, prompts = len(merged["identities"]), len(merged["prompts"])
  rank = merged["config"]["lora_rank"]
  steps = merged["config"]["steps"]
  parts = [
    f"{n} held-out world identities ({FLAGS.split} split) x {prompts} prompts x "
    f"{FLAGS.num_samples} samples; means [95% bootstrap interval over identities]; s/identity: "
    "personalization seconds per identity on this machine, compiling included."
  ]
  for title, rows in sections:
    present = [(label, name) for label, name in rows if name in methods]
    if present:
      parts.append(
        title.format(steps=steps, rank=rank) + "\n\n" + markdown_table(merged, present, METRICS)
      )
  if "full/lidb" in methods:
    lora_kb, lidb_kb = identity_kilobytes(rank)
    parts.append(
      f"Identity numbers (fp32): LoRA relaxation {lora_kb:.1f} KB, LiDB relaxation "
      f"{lidb_kb:.1f} KB."
    )
  return "\n\n".join(parts)


FIGURE_PROMPTS = (
  "a {token} face wearing a red hat",
  "a {token} face with sunglasses",
  "a {token} face on a beach",
  "a {token} face at night",
  "a {token} face in pencil sketch style",
  "a {token} face in pop-art style",
  "a {token} face in watercolour style",
)


def figure(results_dir: str, method: str, path: str, identities: int = 4, scale: int = 2) -> None:
  """PATH: a PNG with a row per identity: its photo, then `method`'s first sample for each of
  FIGURE_PROMPTS (an evaluation's results.json and images in results_dir), upscaled `scale`x."""
  with open(os.path.join(results_dir, "results.json"), encoding="utf-8") as f:
    results = json.load(f)
  rows = []
  for name in list(results["identities"])[:identities]:
    prompts = results["methods"][method]["identities"][name]["prompts"]
    paths = [results["identities"][name]["image"]]
    paths += [prompts[p]["images"][0] for p in FIGURE_PROMPTS]
    rows += [np.asarray(Image.open(os.path.join(results_dir, p)).convert("RGB")) for p in paths]
  grid = image_grid(np.stack(rows), 1 + len(FIGURE_PROMPTS))
  save_png(path, grid.repeat(scale, axis=0).repeat(scale, axis=1))


def tune(photos: str) -> str:
  rows = []
  for lr in FLAGS.learning_rates:
    for steps in FLAGS.step_counts:
      name = f"tune_{FLAGS.relaxation}_lr{lr}_steps{steps}"
      results = run(
        name,
        photos,
        methods="full",
        relaxation=FLAGS.relaxation,
        steps=int(steps),
        **{"optim.learning_rate": float(lr)},
      )
      rows.append((f"lr {lr}, {steps} steps", results))
  rows.sort(key=lambda r: -r[1]["methods"]["full"]["means"]["world_id"])
  merged = {**rows[0][1], "methods": {label: r["methods"]["full"] for label, r in rows}}
  return f"Tuning ({FLAGS.relaxation} relaxation, {FLAGS.split} split)\n\n" + markdown_table(
    merged, [(label, label) for label, _ in rows], METRICS
  )


def main(argv):
  del argv
  quiet_orbax()
  ids = split_identities(FLAGS.split, FLAGS.identities)
  photos = os.path.join(FLAGS.workdir, f"photos_{FLAGS.split}")
  save_photos(photos, ids)
  text = tune(photos) if FLAGS.tune else tables(photos)
  print(text)
  with open(os.path.join(FLAGS.workdir, "tune.md" if FLAGS.tune else "tables.md"), "w") as f:
    f.write(text + "\n")
  if FLAGS.figure:  # the Table 3 run's images (world prompts)
    figure(os.path.join(FLAGS.workdir, "hyper"), "full", FLAGS.figure)


if __name__ == "__main__":
  app.run(main)
