"""Generate images with one or more identities, all in one batch (batched adapters).

  python -m hdb_jax.generate --identity=out/identity.safetensors \\
      --prompt="a {token} face as a rock star" \\
      --num_images=4 --seed=0 --steps=25 --guidance=7.5 --out=images/ [--latents=latents.npy]

`{token}` in a prompt becomes each identity's token ([V]). Writes OUT/<identity>/<prompt>_<k>.png
and OUT/grid.png (rows: identity x prompt, columns: images). The library call is
hdb_jax.diffusion.generation.generate.
"""

import os

import numpy as np
from absl import flags

from hdb_jax import models
from hdb_jax.diffusion.base import DTYPES
from hdb_jax.diffusion.generation import generate
from hdb_jax.diffusion.sampling import SamplingConfig
from hdb_jax.errors import ConfigError, MissingFileError, UserError
from hdb_jax.formats import identity as identity_lib
from hdb_jax.io.images import write_images
from hdb_jax.runtime.cli import run_main
from hdb_jax.runtime.overview import log_parameters


def read_latents(path: str) -> np.ndarray:
  """A .npy file of initial latents (float32 [num_images, C, h, w]); never unpickled."""
  try:
    return np.load(path, allow_pickle=False)
  except FileNotFoundError as e:
    raise MissingFileError(f"--latents file {path} does not exist") from e
  except (ValueError, OSError) as e:
    raise UserError(f"--latents file {path} is not a numpy .npy array ({e})") from e


def main(argv: list[str]) -> None:
  del argv
  f = flags.FLAGS
  for prompt in f.prompt:
    if not prompt.strip():
      raise ConfigError("empty --prompt")
  first = identity_lib.load(f.identity[0])
  sd = models.load_model(f.pretrained or first.meta.base_model, dtype=DTYPES[f.compute_dtype])
  log_parameters({"base model": sd.params})
  identities = [identity_lib.load(path, base=sd) for path in f.identity]
  names = [
    os.path.splitext(os.path.basename(p))[0]
    if os.path.basename(p) != "identity.safetensors"
    else os.path.basename(os.path.dirname(os.path.abspath(p)))
    for p in f.identity
  ]
  if len(set(names)) != len(names):
    names = [f"{i}_{n}" for i, n in enumerate(names)]
  sampling = SamplingConfig(steps=f.steps, guidance=f.guidance, sampler=f.sampler, seed=f.seed)
  latents = read_latents(f.latents) if f.latents else None
  images = generate(
    sd, identities, f.prompt, f.num_images, sampling, f.negative_prompt, latents=latents
  )
  paths = write_images(images, names, f.prompt, f.out)
  print(f"wrote {len(paths) - 1} images and a grid to {f.out}")


def define_flags() -> None:
  flags.DEFINE_multi_string(
    "identity", None, "Identity file(s) (.safetensors); repeat for several."
  )
  flags.DEFINE_multi_string(
    "prompt", ["a photo of {token} face"], "Prompt(s); {token} is the identity's token."
  )
  flags.DEFINE_string("negative_prompt", "", "Prompt for the unconditional half of guidance.")
  flags.DEFINE_integer("num_images", 4, "Images per identity and prompt.", lower_bound=1)
  flags.DEFINE_integer("seed", 0, "Seed; the same seed gives the same images.")
  flags.DEFINE_integer("steps", 25, "Sampling steps.", lower_bound=1)
  flags.DEFINE_float("guidance", 7.5, "Classifier-free guidance scale.")
  flags.DEFINE_enum("sampler", "ddim", ["ddim", "dpm"], "DDIM or DPM-Solver++.")
  flags.DEFINE_string(
    "pretrained", None, "Base model (default: the one named in the identity file)."
  )
  flags.DEFINE_enum("compute_dtype", "float32", sorted(DTYPES), "Compute dtype of the base model.")
  flags.DEFINE_string(
    "latents",
    None,
    "Initial latents, a .npy file of float32 [num_images, C, h, w] (diffusers' "
    "layout, as a pipeline's latents=): used instead of noise from --seed.",
  )
  flags.DEFINE_string("out", None, "Output directory.")
  flags.mark_flags_as_required(["identity", "out"])


if __name__ == "__main__":
  define_flags()
  run_main(main)
