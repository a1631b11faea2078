"""The world from the command line: ground truth, scores, and the world model's measured quality.

  python -m hdb_jax.world render --identity=3 --out=face.png
  python -m hdb_jax.world render --identity=3 --view=2 --resolution=128 \\
      --prompt="a smiling face wearing a red hat on a beach in watercolour style" --out=beach.png
  python -m hdb_jax.world gallery --out=docs/world.png       # the README's picture of the world
  python -m hdb_jax.world score --reference=face.png --images=DIR [--prompt="a face at night"]
  python -m hdb_jax.world quality [--model=world] [--out=DIR] [--update_card [--recipe=R.md]]
  python -m hdb_jax.world quality --first_seed=1000 --guidance=5   # tune on other noise seeds

render: one identity in a scene, as a PNG. gallery: a row of identities (two views each: the
clothing and framing change, the face does not), then --identity (default 3) with each attribute's
values, one row per attribute. The prompt follows the caption grammar of
hdb_jax/world/truth/scene.py ('a [smiling] face [wearing a red|blue|green|yellow hat] [with
glasses|with sunglasses] [on a beach|in a forest|in a city|at night] [in pencil sketch|pop-art|
watercolour|pixel art style]'); the identity is never in it.
score: each image in DIR (PNG/JPEG) against the reference by both networks, the judge's first: its
identity similarity (the judge is the independent one: nothing trains on it), then World-ID (the
recognizer's, which the hypernetwork reads), what World-prompt reads in each, and with --prompt the
World-prompt accuracy against it.
quality: samples of the world model for every context and style, scored by the recognizer
(World-prompt accuracy, World-ID Frechet distance, sharpness against renders, VAE PSNR) and the
judge (the share of samples it reads as a face of some identity); writes OUT/quality.json and
OUT/samples.png, and with --update_card the model's card (which takes the default sampling only:
what the card reports is what the evaluation draws with).
"""

import dataclasses
import json
import os

import numpy as np
from absl import app, flags

from hdb_jax.errors import UserError
from hdb_jax.io.files import write_text_atomic
from hdb_jax.io.images import load_image, save_png
from hdb_jax.runtime.cli import run_main
from hdb_jax.world.truth.render import render
from hdb_jax.world.truth.scene import ATTRIBUTES, Scene, caption, parse_prompt

flags.DEFINE_integer("identity", None, "render: identity id (any integer >= 0).", lower_bound=0)
flags.DEFINE_integer("view", 0, "render: view id (pose, lighting, background).", lower_bound=0)
flags.DEFINE_string("prompt", None, "render: what the image shows (default 'a face'); score: "
                    "the prompt the images were made for.")  # fmt: skip
flags.DEFINE_integer("resolution", 64, "render: image side in pixels.", lower_bound=16)
flags.DEFINE_integer("seed", 0, "World seed: which faces the identity ids stand for.")
flags.DEFINE_string("out", None, "render: output PNG; quality: output directory.")
flags.DEFINE_string("reference", None, "score: the reference image of the identity.")
flags.DEFINE_string("images", None, "score: a directory of images to score.")
flags.DEFINE_string("recognizer", None, "score, quality: a recognizer directory (default: "
                    "the shipped one).")  # fmt: skip
flags.DEFINE_string("judge", None, "score, quality: a judge directory (default: the shipped one).")
flags.DEFINE_string("model", "world", "quality: the model (name or diffusers directory).")
flags.DEFINE_integer("seeds", 8, "quality: samples per prompt.", lower_bound=1)
flags.DEFINE_bool("update_card", False, "quality: write the results into the model's card.")
flags.DEFINE_string("recipe", None, "quality --update_card: also write this markdown file into the "
                    "card: what each choice of the recipe bought, measured.")  # fmt: skip
flags.DEFINE_integer("first_seed", 0, "quality: the first noise seed (samples use first_seed.."
                     "first_seed+seeds-1; the card's are 0..seeds-1).", lower_bound=0)  # fmt: skip
flags.DEFINE_float("guidance", None, "quality: classifier-free guidance scale (default: "
                   "hdb_jax.world.quality.QUALITY_SAMPLING's).", lower_bound=1.0)  # fmt: skip
FLAGS = flags.FLAGS
COMMANDS = ("render", "gallery", "score", "quality")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _render() -> None:
  if FLAGS.identity is None or not FLAGS.out:
    raise app.UsageError("render needs --identity and --out")
  scene = parse_prompt(FLAGS.prompt or "a face")
  save_png(FLAGS.out, render(FLAGS.identity, FLAGS.view, scene, FLAGS.resolution, FLAGS.seed))
  print(f"{FLAGS.out}: identity {FLAGS.identity}, view {FLAGS.view}, '{caption(scene)}'")


def _gallery() -> None:
  from hdb_jax.io.images import image_grid  # pylint: disable=import-outside-toplevel

  if not FLAGS.out:
    raise app.UsageError("gallery needs --out")
  size, identity, columns = FLAGS.resolution, 3 if FLAGS.identity is None else FLAGS.identity, 10
  cells = [render(i, v, None, size, FLAGS.seed) for i in range(columns // 2) for v in (0, 1)]
  for name, values in ATTRIBUTES.items():
    row = [render(identity, 0, Scene(**{name: value}), size, FLAGS.seed) for value in values]
    cells += row + [np.full_like(row[0], 255)] * (columns - len(row))
  save_png(FLAGS.out, image_grid(np.stack(cells), columns))
  print(f"{FLAGS.out}: identities 0-{columns // 2 - 1} in views 0 and 1, then identity {identity} "
        f"with each value of {', '.join(ATTRIBUTES)} (one row each)")  # fmt: skip


def _uint8(path: str) -> np.ndarray:
  image = load_image(path, 64, min_size=16)
  return np.clip(np.round((image + 1) * 127.5), 0, 255).astype(np.uint8)


def _score() -> None:
  # pylint: disable=import-outside-toplevel
  from hdb_jax.world.quality import score_images, similarity_to
  from hdb_jax.world.recognizer.network import load_judge, load_recognizer

  if not FLAGS.reference or not FLAGS.images:
    raise app.UsageError("score needs --reference and --images")
  if not os.path.isdir(FLAGS.images):
    raise UserError(f"--images={FLAGS.images}: not a directory")
  names = sorted(n for n in os.listdir(FLAGS.images) if n.lower().endswith(IMAGE_SUFFIXES))
  if not names:
    raise UserError(f"{FLAGS.images} holds no {'/'.join(IMAGE_SUFFIXES)} images")
  if FLAGS.prompt:
    parse_prompt(FLAGS.prompt)  # a prompt outside the grammar is refused before any work
  images = np.stack([_uint8(os.path.join(FLAGS.images, n)) for n in names])
  reference = _uint8(FLAGS.reference)
  judge = similarity_to(load_judge(FLAGS.judge), reference, images)
  scores = score_images(load_recognizer(FLAGS.recognizer), reference, images, FLAGS.prompt)
  print(f"{'image':<32} judge   World-ID  World-prompt reads")
  for name, judged_one, similarity, read in zip(names, judge, scores["similarity"], scores["read"]):
    shown = ", ".join(f"{v}" for k, v in read.items() if v not in ("none", "neutral"))
    print(f"{name:<32} {judged_one:+.3f}  {similarity:+.3f}    {shown}")
  print(f"mean judge similarity {np.mean(judge):+.3f} (the judge's card gives its same-identity "
        "ceiling and impostor floor)")  # fmt: skip
  print(f"mean World-ID similarity {np.mean(scores['similarity']):+.3f}")
  if FLAGS.prompt:
    accuracy = scores["world_prompt"]
    print(f"World-prompt accuracy against {FLAGS.prompt!r}: {accuracy['mean']:.3f} (all "
          f"attributes right in {accuracy['all_correct']:.0%} of images)")  # fmt: skip


def _quality() -> None:
  # pylint: disable=import-outside-toplevel
  from hdb_jax.models import load_model
  from hdb_jax.models.pretrained import resolve_model_dir
  from hdb_jax.world.quality import QUALITY_SAMPLING, measure_quality
  from hdb_jax.world.recognizer.network import load_judge, load_recognizer

  out = FLAGS.out or "world_quality"
  if FLAGS.update_card and (FLAGS.first_seed or FLAGS.guidance is not None):
    raise UserError("--update_card measures the card's sampling: drop --first_seed and --guidance")
  if FLAGS.recipe and not FLAGS.update_card:
    raise UserError("--recipe goes into the card: add --update_card")
  recipe = None
  if FLAGS.recipe:
    with open(FLAGS.recipe, encoding="utf-8") as f:  # before the long measurement
      recipe = f.read()
  sampling_config = QUALITY_SAMPLING
  if FLAGS.guidance is not None:
    sampling_config = dataclasses.replace(sampling_config, guidance=FLAGS.guidance)
  report, grid = measure_quality(load_model(FLAGS.model), load_recognizer(FLAGS.recognizer),
                                 seeds=FLAGS.seeds, sampling_config=sampling_config,
                                 data_seed=FLAGS.seed, first_seed=FLAGS.first_seed,
                                 judge=load_judge(FLAGS.judge))  # fmt: skip
  os.makedirs(out, exist_ok=True)
  write_text_atomic(os.path.join(out, "quality.json"), json.dumps(report, indent=2))
  save_png(os.path.join(out, "samples.png"), grid)
  print(json.dumps(report, indent=2))
  if FLAGS.update_card:
    from hdb_jax.world.pretrain import release

    directory = resolve_model_dir(FLAGS.model)
    card = release.read_card(directory)
    card["quality"] = report
    if recipe is not None:
      card["recipe"] = recipe
    release.write_card(directory, card)
    print(f"card updated: {directory}")


def main(argv: list[str]) -> None:
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(
      f"give one command: {', '.join(COMMANDS)} (e.g. `render --identity=3 ...`)"
    )
  {"render": _render, "gallery": _gallery, "score": _score, "quality": _quality}[argv[1]]()


if __name__ == "__main__":
  run_main(main, max_args=2)
