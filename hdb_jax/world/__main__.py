"""Ground truth of the world, for anyone: one identity in a scene, as a PNG.

  python -m hdb_jax.world render --identity=3 --out=face.png
  python -m hdb_jax.world render --identity=3 --view=2 --resolution=128 \\
      --prompt="a smiling face wearing a red hat on a beach in watercolour style" --out=beach.png

The prompt follows the caption grammar of hdb_jax/world/scene.py ('a [smiling] face [wearing a
red|blue|green|yellow hat] [with glasses|with sunglasses] [on a beach|in a forest|in a city|at
night] [in pencil sketch|pop-art|watercolour|pixel art style]'); the identity is never in it.
"""

from absl import app, flags

from hdb_jax.io.images import save_png
from hdb_jax.runtime.cli import run_main
from hdb_jax.world.render import render
from hdb_jax.world.scene import caption, parse_prompt

flags.DEFINE_integer("identity", None, "Identity id (any integer >= 0).", lower_bound=0)
flags.DEFINE_integer("view", 0, "View id: pose, lighting and background details.", lower_bound=0)
flags.DEFINE_string("prompt", "a face", "What the image shows (the caption grammar above).")
flags.DEFINE_integer("resolution", 64, "Image side in pixels.", lower_bound=16)
flags.DEFINE_integer("seed", 0, "World seed: which faces the identity ids stand for.")
flags.DEFINE_string("out", None, "Output PNG file.")
flags.mark_flags_as_required(["identity", "out"])
FLAGS = flags.FLAGS
COMMANDS = ("render",)


def main(argv: list[str]) -> None:
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(
      f"give one command: {', '.join(COMMANDS)} (e.g. `render --identity=3 ...`)"
    )
  scene = parse_prompt(FLAGS.prompt)
  save_png(FLAGS.out, render(FLAGS.identity, FLAGS.view, scene, FLAGS.resolution, FLAGS.seed))
  print(f"{FLAGS.out}: identity {FLAGS.identity}, view {FLAGS.view}, '{caption(scene)}'")


if __name__ == "__main__":
  run_main(main, max_args=2)
