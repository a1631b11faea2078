"""Generate images with one or more identities, all in one batch (batched adapters).

  python -m hdb_jax.generate --identity=out/identity.safetensors --prompt="a {token} face as a rock star" \\
      --num_images=4 --seed=0 --steps=25 --guidance=7.5 --out=images/ [--latents=latents.npy]

`{token}` in a prompt becomes each identity's token ([V]). Writes OUT/<identity>/<prompt>_<k>.png and
OUT/grid.png (rows: identity x prompt, columns: images).
"""

import os
import re
from typing import Sequence

import jax.numpy as jnp
import numpy as np
from absl import flags
from PIL import Image

from hdb_jax import identity as identity_lib
from hdb_jax import models
from hdb_jax.base_model import DTYPES
from hdb_jax.errors import ConfigError, MissingFileError, UserError
from hdb_jax.fileio import atomic_path
from hdb_jax.sampling import (SamplingConfig, check_latents, image_grid, make_sampler, stack_identity_factors,
                              to_uint8)


def slug(text: str, limit: int = 48) -> str:
  return re.sub(r"[^a-zA-Z0-9]+", "_", text).strip("_")[:limit] or "prompt"


def save_png(path: str, image: np.ndarray) -> None:
  with atomic_path(path) as tmp:
    Image.fromarray(image).save(tmp, format="PNG")


def generate(sd: models.StableDiffusion, identities: Sequence[identity_lib.Identity], prompts: Sequence[str],
             num_images: int, sampling: SamplingConfig, negative_prompt: str = "", sampler=None,
             latents: np.ndarray | None = None) -> np.ndarray:
  """Images [len(identities), len(prompts), num_images, H, W, 3] uint8, sampled in one batch.

  Image k of every (identity, prompt) starts from the noise of (seed, k), or from latents[k] when
  `latents` (float32 [num_images, C, h, w], diffusers' layout, as a diffusers pipeline's `latents=`) is
  given. Many calls can share one `sampler = make_sampler(sd, sampling)` (traced once per batch shape).
  """
  if latents is not None:
    latents = check_latents(sd, latents, num_images)
  rows = [(i, p) for i in range(len(identities)) for p in prompts]
  cond, factor_list, noise_ids = [], [], []
  per_identity = [ident.factors() for ident in identities]
  for i, prompt in rows:
    text = prompt.replace("{token}", identities[i].meta.token)
    ids = models.tokenize(sd, [text])
    for k in range(num_images):
      cond.append(ids[0])
      factor_list.append(per_identity[i])
      noise_ids.append(k)
  uncond = np.repeat(models.tokenize(sd, [negative_prompt], allow_empty=True), len(cond), axis=0)
  factors = stack_identity_factors(factor_list) if factor_list[0] else None
  sample = sampler or make_sampler(sd, sampling)
  images = sample(sd.params, factors, jnp.asarray(np.stack(cond)), jnp.asarray(uncond),
                  jnp.asarray(noise_ids, jnp.int32), None if latents is None else jnp.asarray(latents[noise_ids]))
  images = to_uint8(images)
  return images.reshape((len(identities), len(prompts), num_images) + images.shape[1:])


def write_images(images: np.ndarray, identity_names: Sequence[str], prompts: Sequence[str], out: str) -> list[str]:
  """Writes OUT/<identity>/<prompt slug>_<k>.png and OUT/grid.png; returns the paths."""
  paths = []
  for i, name in enumerate(identity_names):
    for p, prompt in enumerate(prompts):
      for k in range(images.shape[2]):
        path = os.path.join(out, name, f"{slug(prompt)}_{k}.png")
        save_png(path, images[i, p, k])
        paths.append(path)
  grid = image_grid(images.reshape((-1,) + images.shape[3:]), columns=images.shape[2])
  save_png(os.path.join(out, "grid.png"), grid)
  return paths + [os.path.join(out, "grid.png")]


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
  if not f.identity:
    raise ConfigError("give at least one --identity=FILE")
  if not f.out:
    raise ConfigError("--out is required")
  for prompt in f.prompt:
    if not prompt.strip():
      raise ConfigError("empty --prompt")
  first = identity_lib.load(f.identity[0])
  sd = models.load_model(f.pretrained or first.meta.base_model, dtype=DTYPES[f.compute_dtype])
  identities = [identity_lib.load(path, base=sd) for path in f.identity]
  names = [os.path.splitext(os.path.basename(p))[0] if os.path.basename(p) != "identity.safetensors"
           else os.path.basename(os.path.dirname(os.path.abspath(p))) for p in f.identity]
  if len(set(names)) != len(names):
    names = [f"{i}_{n}" for i, n in enumerate(names)]
  sampling = SamplingConfig(steps=f.steps, guidance=f.guidance, sampler=f.sampler, seed=f.seed)
  latents = read_latents(f.latents) if f.latents else None
  images = generate(sd, identities, f.prompt, f.num_images, sampling, f.negative_prompt, latents=latents)
  paths = write_images(images, names, f.prompt, f.out)
  print(f"wrote {len(paths) - 1} images and a grid to {f.out}")


def define_flags() -> None:
  flags.DEFINE_multi_string("identity", [], "Identity file(s) (.safetensors); repeat for several.")
  flags.DEFINE_multi_string("prompt", ["a photo of {token} face"], "Prompt(s); {token} is the identity's token.")
  flags.DEFINE_string("negative_prompt", "", "Prompt for the unconditional half of guidance.")
  flags.DEFINE_integer("num_images", 4, "Images per identity and prompt.", lower_bound=1)
  flags.DEFINE_integer("seed", 0, "Seed; the same seed gives the same images.")
  flags.DEFINE_integer("steps", 25, "Sampling steps.", lower_bound=1)
  flags.DEFINE_float("guidance", 7.5, "Classifier-free guidance scale.")
  flags.DEFINE_enum("sampler", "ddim", ["ddim", "dpm"], "DDIM or DPM-Solver++.")
  flags.DEFINE_string("pretrained", None, "Base model (default: the one named in the identity file).")
  flags.DEFINE_enum("compute_dtype", "float32", sorted(DTYPES), "Compute dtype of the base model.")
  flags.DEFINE_string("latents", None, "Initial latents, a .npy file of float32 [num_images, C, h, w] (diffusers' "
                      "layout, as a pipeline's latents=): used instead of noise from --seed.")
  flags.DEFINE_string("out", None, "Output directory.")


if __name__ == "__main__":
  from hdb_jax.cli import run_main  # pylint: disable=import-outside-toplevel
  define_flags()
  run_main(main)
