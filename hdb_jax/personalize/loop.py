"""Phase 2's loop: photo files in; per photo an identity file, samples, an export and a record out.

Writes, per photo, into WORKDIR (one photo) or WORKDIR/<photo name>/ (several):
identity.safetensors, samples/ (grid.png and one PNG per prompt), record.json (timings, losses,
config) and export/<format>/. An existing identity is replaced only with `overwrite`; samples and
files are written atomically.
"""

import json
import logging
import os
import shutil
import time

import ml_collections
import numpy as np

from hdb_jax.diffusion.base import BaseModel, setup_base_model
from hdb_jax.diffusion.generation import generate
from hdb_jax.diffusion.sampling import SamplingConfig
from hdb_jax.errors import ConfigError, OutputExistsError, UserError
from hdb_jax.formats import identity as identity_lib
from hdb_jax.formats.hypernet_loading import load_predictor
from hdb_jax.io.files import write_text_atomic
from hdb_jax.io.images import load_image, write_images
from hdb_jax.personalize.step import personalize_images

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def photo_paths(config: ml_collections.ConfigDict) -> list[str]:
  """config.image, or config.images (comma-separated files or a folder) -> photo paths."""
  if bool(config.image) == bool(config.images):
    raise ConfigError(
      "give exactly one of --config.image=FILE or --config.images=A,B,... (or a folder)"
    )
  if config.image:
    return [config.image]
  if os.path.isdir(config.images):
    paths = sorted(
      os.path.join(config.images, n)
      for n in os.listdir(config.images)
      if n.lower().endswith(IMAGE_SUFFIXES)
    )
    if not paths:
      raise UserError(f"no .jpg/.png/.webp photos in {config.images}")
    return paths
  return [p.strip() for p in config.images.split(",") if p.strip()]


def _output_dirs(workdir: str, paths: list[str], overwrite: bool) -> list[str]:
  if len(paths) == 1:
    dirs = [workdir]
  else:
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(stems)) != len(stems):
      stems = [f"{i:03d}_{s}" for i, s in enumerate(stems)]
    dirs = [os.path.join(workdir, s) for s in stems]
  for d in dirs:
    if os.path.exists(os.path.join(d, "identity.safetensors")) and not overwrite:
      raise OutputExistsError(
        f"{d} already holds an identity; use --config.overwrite=True or another --workdir"
      )
  return dirs


def _write_outputs(
  base: BaseModel,
  config: ml_collections.ConfigDict,
  out: str,
  photo: str,
  ident: identity_lib.Identity,
  losses: np.ndarray,
  timings: dict[str, float],
) -> None:
  """Samples first (into a temp dir, then renamed), then the identity, export and record."""
  os.makedirs(out, exist_ok=True)
  record_timings = dict(timings)
  if config.num_samples:
    start = time.perf_counter()
    sampling = SamplingConfig(
      steps=config.sample_steps, guidance=config.guidance, sampler=config.sampler, seed=config.seed
    )
    prompts = list(config.sample_prompts)
    images = generate(base.sd, [ident], prompts, config.num_samples, sampling)
    tmp = os.path.join(out, ".samples.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write_images(images, ["."], prompts, tmp)
    shutil.rmtree(os.path.join(out, "samples"), ignore_errors=True)
    os.replace(tmp, os.path.join(out, "samples"))
    record_timings["samples_s"] = time.perf_counter() - start
  identity_path = os.path.join(out, "identity.safetensors")
  identity_lib.save(identity_path, ident)
  if config.export:
    from hdb_jax.export import export_identity

    start = time.perf_counter()
    export_identity(
      ident,
      config.export,
      os.path.join(out, "export", config.export),
      pretrained=base.source if config.export == "merged" else None,
      overwrite=True,
    )
    record_timings["export_s"] = time.perf_counter() - start
  record = {
    "photo": os.path.abspath(photo),
    "identity": identity_path,
    "timings_s": record_timings,
    "losses": losses.tolist(),
    "identity_bytes": os.path.getsize(identity_path),
    "config": json.loads(config.to_json_best_effort()),
  }
  write_text_atomic(os.path.join(out, "record.json"), json.dumps(record, indent=1))


def personalize(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """Personalizes the configured photo(s); returns the output directories."""
  paths = photo_paths(config)
  dirs = _output_dirs(workdir, paths, config.overwrite)
  start = time.perf_counter()
  base = setup_base_model(config)
  load_s = time.perf_counter() - start
  images = np.stack(
    [load_image(p, base.sd.resolution, min_size=config.data.min_size) for p in paths]
  )
  predictor = None if config.hypernet in ("", "none") else load_predictor(config.hypernet, base)
  result = personalize_images(base, config, images, predictor)
  result.timings["load_model_s"] = load_s
  for i, (photo, out) in enumerate(zip(paths, dirs)):
    _write_outputs(
      base, config, out, photo, result.identities[i], result.losses[:, i], result.timings
    )
    logging.info(
      "%s: final loss %s -> %s", photo, result.losses[-1, i] if len(result.losses) else None, out
    )
  return dirs
