"""Phase 2: personalize face photos: (hypernetwork prediction +) a short jitted finetune.

  python -m hdb_jax.personalize --config=configs/personalize.py:tiny --config.image=face.jpg --workdir=OUT

With a hypernetwork, its predicted LiDB weights are frozen and a LoRA of rank r' is trained on top
for `steps` steps (rank-relaxed fast finetune): the identity holds both, delta W = [A | A_r][B ; B_r].
Without one (`hypernet=none`), LiDB (or LoRA) is trained from scratch: the DreamBooth baseline.
Several photos run as one batch, each with its own weights; a photo's result does not depend on
the batch it is in (its random stream comes from its pixels and the seed).

Writes, per photo, into WORKDIR (one photo) or WORKDIR/<photo name>/ (several): identity.safetensors,
samples/ (grid.png and one PNG per prompt), record.json (timings, losses, config) and export/<format>/.
"""

import dataclasses
import json
import logging
import os
import shutil
import time
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags

from hdb_jax import adapters, data
from hdb_jax import identity as identity_lib
from hdb_jax.base_model import BaseModel, encode_images, setup_base_model
from hdb_jax.cli import define_config_flags, run_main
from hdb_jax.errors import ConfigError, OutputExistsError, UserError
from hdb_jax.fileio import write_text_atomic
from hdb_jax.generate import generate, write_images
from hdb_jax.predictor import LidbPredictor, load_predictor
from hdb_jax.sampling import SamplingConfig
from hdb_jax.training.engine import AdapterTrainer, check_finite, example_keys, stack_examples, unstack_example
from hdb_jax.training.optim import make_optimizer
from hdb_jax.training.prior import make_class_prior

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclasses.dataclass
class Personalized:
  """The result for a batch of photos: one identity each, the loss curves [steps, P], timings (s)."""
  identities: list[identity_lib.Identity]
  losses: np.ndarray
  timings: dict[str, float]


def photo_paths(config: ml_collections.ConfigDict) -> list[str]:
  """config.image, or config.images (comma-separated files or a folder) -> photo paths."""
  if bool(config.image) == bool(config.images):
    raise ConfigError("give exactly one of --config.image=FILE or --config.images=A,B,... (or a folder)")
  if config.image:
    return [config.image]
  if os.path.isdir(config.images):
    paths = sorted(os.path.join(config.images, n) for n in os.listdir(config.images)
                   if n.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
      raise UserError(f"no .jpg/.png/.webp photos in {config.images}")
    return paths
  return [p.strip() for p in config.images.split(",") if p.strip()]


def photo_seeds(seed: int, images: np.ndarray) -> jax.Array:
  """One 31-bit id per photo from its pixels: a photo's random stream is independent of the batch."""
  return jnp.asarray([(zlib.crc32(np.ascontiguousarray(im).tobytes()) ^ seed) & 0x7FFFFFFF for im in images],
                     jnp.int32)


def _initial_trainable(base: BaseModel, config: ml_collections.ConfigDict, kind: str, ids: jax.Array) -> Any:
  keys = [jax.random.fold_in(jax.random.PRNGKey(config.seed + 1), int(i)) for i in ids]
  if kind == "lidb":
    return stack_examples([adapters.init_lidb(base.layers, base.lidb_config, k) for k in keys])
  return stack_examples([adapters.init_lora(base.layers, config.lora_rank, k) for k in keys])


def personalize_images(base: BaseModel, config: ml_collections.ConfigDict, images: np.ndarray,
                       predictor: LidbPredictor | None = None) -> Personalized:
  """Personalizes each photo of images [P, H, W, 3] (in [-1, 1]); returns identities and losses."""
  timings = {}
  start = time.perf_counter()
  latents = encode_images(base, images)
  ids = photo_seeds(config.seed, images)
  frozen, predicted = None, None
  if predictor is not None:
    predicted = predictor(jnp.asarray(images))
    frozen = adapters.lidb_factors(predicted, base.aux)
    timings["predict_s"] = time.perf_counter() - start
  kind = "lora" if predictor is not None or config.baseline == "lora" else "lidb"
  if kind == "lidb" and config.baseline != "lidb":
    raise ConfigError(f"baseline must be 'lidb' or 'lora', not {config.baseline!r}")
  if predictor is not None and config.steps == 0:  # the prediction alone: nothing to compile or train
    trained_all, losses = None, np.zeros((0, len(images)), np.float32)
  else:
    trained_all, losses = _finetune(base, config, kind, frozen, latents, ids, timings)
  identities = []
  for i in range(len(images)):
    trained = None if trained_all is None else unstack_example(trained_all, i)
    lidb = unstack_example(predicted, i) if predicted is not None else (trained if kind == "lidb" else None)
    lora = trained if kind == "lora" else None  # None for the prediction alone: the ~100 KB LiDB identity
    identities.append(identity_lib.from_arrays(
        base.layers, base.source, base.sd.fingerprint(), base.lidb_config if lidb is not None else None,
        lidb=lidb, lora=lora, token=base.token,
        extra={"final_loss": float(losses[-1, i]) if len(losses) else None, "steps": config.steps,  # 0 steps: none
               "method": ("hyper" if config.steps == 0 else "hyper+finetune") if predictor
               else f"{kind}-from-scratch"}))
  return Personalized(identities=identities, losses=losses, timings=timings)


def _finetune(base: BaseModel, config: ml_collections.ConfigDict, kind: str, frozen: Any, latents: jax.Array,
              ids: jax.Array, timings: dict[str, float]) -> tuple[Any, np.ndarray]:
  """Trains `kind` ('lidb' or 'lora', on top of the frozen prediction if any) for config.steps in one
  compiled run: (trained params with a photo axis, losses [steps, P])."""
  if kind == "lora":
    to_factors, packer = adapters.lora_factors, adapters.lora_packer(base.layers, config.lora_rank)
  else:
    to_factors = lambda t: adapters.lidb_factors(t, base.aux)  # pylint: disable=unnecessary-lambda-assignment
    packer = adapters.lidb_packer(base.layers, base.lidb_config)
  trainer = AdapterTrainer(sd=base.sd, to_factors=to_factors, optimizer=make_optimizer(config.optim, config.steps),
                           packer=packer)
  state = trainer.init(_initial_trainable(base, config, kind, ids))
  args = (base.sd.params, frozen, latents, base.prompt_batch(len(ids)), example_keys(config.seed, ids), state,
          make_class_prior(base, config))
  start = time.perf_counter()
  run = trainer.make_run(config.steps).lower(*args).compile()
  timings["compile_s"] = time.perf_counter() - start
  start = time.perf_counter()
  state, losses = run(*args)
  losses = np.asarray(losses)
  timings["finetune_s"] = time.perf_counter() - start
  check_finite(state, [f"photo {i}" for i in range(len(ids))])
  return trainer.trainable_tree(state), losses


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
      raise OutputExistsError(f"{d} already holds an identity; use --config.overwrite=True or another --workdir")
  return dirs


def _write_outputs(base: BaseModel, config: ml_collections.ConfigDict, out: str, photo: str,
                   ident: identity_lib.Identity, losses: np.ndarray, timings: dict[str, float]) -> None:
  """Samples first (into a temp dir, then renamed), then the identity, export and record."""
  os.makedirs(out, exist_ok=True)
  record_timings = dict(timings)
  if config.num_samples:
    start = time.perf_counter()
    sampling = SamplingConfig(steps=config.sample_steps, guidance=config.guidance, sampler=config.sampler,
                              seed=config.seed)
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
    from hdb_jax.export import export_identity  # pylint: disable=import-outside-toplevel
    start = time.perf_counter()
    export_identity(ident, config.export, os.path.join(out, "export", config.export),
                    pretrained=base.source if config.export == "merged" else None, overwrite=True)
    record_timings["export_s"] = time.perf_counter() - start
  record = {"photo": os.path.abspath(photo), "identity": identity_path, "timings_s": record_timings,
            "losses": losses.tolist(), "identity_bytes": os.path.getsize(identity_path),
            "config": json.loads(config.to_json_best_effort())}
  write_text_atomic(os.path.join(out, "record.json"), json.dumps(record, indent=1))


def personalize(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """Personalizes the configured photo(s); returns the output directories."""
  paths = photo_paths(config)
  dirs = _output_dirs(workdir, paths, config.overwrite)
  start = time.perf_counter()
  base = setup_base_model(config)
  load_s = time.perf_counter() - start
  images = np.stack([data.load_image(p, base.sd.resolution, min_size=config.data.min_size) for p in paths])
  predictor = None if config.hypernet in ("", "none") else load_predictor(config.hypernet, base)
  result = personalize_images(base, config, images, predictor)
  result.timings["load_model_s"] = load_s
  for i, (photo, out) in enumerate(zip(paths, dirs)):
    _write_outputs(base, config, out, photo, result.identities[i], result.losses[:, i], result.timings)
    logging.info("%s: final loss %s -> %s", photo, result.losses[-1, i] if len(result.losses) else None, out)
  return dirs


def main(argv: list[str]) -> None:
  del argv
  if not flags.FLAGS.workdir:
    raise ConfigError("--workdir is required")
  dirs = personalize(flags.FLAGS.config, flags.FLAGS.workdir)
  for d in dirs:
    print(f"identity written to {os.path.join(d, 'identity.safetensors')}")


if __name__ == "__main__":
  define_config_flags("configs/personalize.py:tiny")
  run_main(main)
