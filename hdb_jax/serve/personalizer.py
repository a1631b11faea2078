"""A warm personalization service: the base model, the hypernetwork and the compiled programs are
loaded once, and photos are personalized in batches padded to a few fixed sizes, so that no request
compiles anything once the service is warm.

    personalizer = Personalizer(hdb_jax.config.serving.app_config("world"))
    personalizer.warm_up()                                    # every batch size, once
    done = personalizer.personalize([photo_a, photo_b], [prompts_a, prompts_b])
    done[0].identity, done[0].images                          # [prompts, samples, H, W, 3] uint8
    more = personalizer.generate(done[0].identity, ["a {token} face on a beach"])

Photos are float32 [H, W, 3] in [-1, 1] at the model's resolution (`prepare_photo` makes them from
uploaded bytes). A photo's identity does not depend on the batch it ran in (the finetune's random
stream comes from its pixels), so batching users together changes no one's result.
"""

import dataclasses
import logging
import threading
import time
from typing import Callable, Sequence

import jax
import ml_collections
import numpy as np

from hdb_jax.diffusion.base import setup_base_model
from hdb_jax.diffusion.generation import generate_rows
from hdb_jax.diffusion.sampling import SamplingConfig, make_sampler
from hdb_jax.errors import ConfigError, UserError
from hdb_jax.formats import identity as identity_lib
from hdb_jax.formats.hypernet_export import is_exported
from hdb_jax.formats.hypernet_loading import WORLD, WORLD_HYPERNET_DIR, load_predictor
from hdb_jax.io.images import load_image
from hdb_jax.personalize.step import personalize_images

AUTO = "auto"  # config.hypernet: the shipped world hypernetwork when installed, else none
Progress = Callable[[str, float], None]  # (stage description, fraction done in [0, 1])


@dataclasses.dataclass
class Personalization:
  """One photo's result: its identity, its images [prompts, samples, H, W, 3] uint8, the batch it
  ran in, and timings in seconds (queue_s is filled in by the scheduler)."""

  identity: identity_lib.Identity
  images: np.ndarray
  prompts: list[str]
  batch_id: int
  batch_size: int  # photos personalized together in that run (before padding)
  padded_to: int
  timings: dict[str, float]


def resolve_service_hypernet(name: str) -> str:
  """config.hypernet -> what load_predictor takes ('' for none): 'auto' is the shipped world
  hypernetwork when this installation has one, else none (LiDB trained from scratch)."""
  if name == AUTO:
    return WORLD if is_exported(WORLD_HYPERNET_DIR) else ""
  return "" if name in ("", "none") else name


def padded_size(count: int, sizes: Sequence[int]) -> int:
  """The smallest of the fixed batch `sizes` that holds `count` photos."""
  for size in sorted(sizes):
    if size >= count:
      return size
  raise ValueError(f"{count} photos exceed the largest batch size {max(sizes)}")


class Personalizer:
  """The loaded model, hypernetwork, compiled finetune runs and sampler of one config (app_config's
  fields; thread-safe: one batch runs at a time)."""

  def __init__(self, config: ml_collections.ConfigDict):
    if not config.batch_sizes or min(config.batch_sizes) < 1:
      raise ConfigError(f"batch_sizes must be positive sizes, got {tuple(config.batch_sizes)}")
    if config.max_prompts < 1 or config.num_samples < 1:
      raise ConfigError("max_prompts and num_samples must be at least 1")
    if not 1 <= len(config.get("prompts", [config.prompt])) <= config.max_prompts:
      raise ConfigError(f"give 1 to max_prompts={config.max_prompts} default prompts")
    self.config = config
    start = time.perf_counter()
    self.base = setup_base_model(config)
    self.hypernet = resolve_service_hypernet(config.hypernet)
    self.predictor = load_predictor(self.hypernet, self.base) if self.hypernet else None
    self.sampling = SamplingConfig(
      steps=config.sample_steps, guidance=config.guidance, sampler=config.sampler, seed=config.seed
    )
    self.sampler = make_sampler(self.base.sd, self.sampling)
    self.load_s = time.perf_counter() - start
    self._compiled: dict = {}
    self._lock = threading.Lock()
    self._progress: Progress | None = None
    self._ranks: tuple[int, int] | None = None  # (LiDB, LoRA) ranks of the identities it makes
    self._batches = 0
    logging.info(
      "personalizer ready in %.1f s: %s, hypernetwork %s, batch sizes %s",
      self.load_s,
      self.base.source,
      self.hypernet or "none (trained from scratch)",
      tuple(config.batch_sizes),
    )

  @property
  def resolution(self) -> int:
    return self.base.sd.resolution

  @property
  def max_batch(self) -> int:
    return max(self.config.batch_sizes)

  def describe(self) -> str:
    """One line for pages and logs: the model, the hypernetwork and the finetune."""
    method = f"hypernetwork {self.hypernet}" if self.hypernet else "no hypernetwork (from scratch)"
    return (
      f"{self.base.source}, {method}, {self.config.steps} finetune steps, "
      f"{self.config.sample_steps} sampling steps"
    )

  def prepare_photo(self, data: bytes, name: str = "upload") -> np.ndarray:
    """Encoded image bytes -> float32 [R, R, 3] in [-1, 1]; ImageError (one line) if unusable, too
    small (config.min_photo_side) or over config.max_photo_pixels (refused before decoding)."""
    return load_image(
      data,
      self.resolution,
      min_size=self.config.min_photo_side,
      name=name,
      max_pixels=self.config.max_photo_pixels,
    )

  def _on_step(self, step: jax.Array) -> None:
    """The compiled finetune's progress hook (runs on the host while the run goes on)."""
    progress = self._progress
    if progress is not None and self.config.steps:
      done = int(step)
      progress(f"finetune step {done}/{self.config.steps}", 0.15 + 0.6 * done / self.config.steps)

  def personalize(
    self,
    photos: Sequence[np.ndarray],
    prompts: Sequence[Sequence[str]],
    progress: Progress | None = None,
  ) -> list[Personalization]:
    """photos: float32 [R, R, 3] each; prompts: each photo's prompts (at most config.max_prompts,
    '{token}' for the person). One run: prediction, the finetune, then every photo's images."""
    if not photos or len(photos) != len(prompts):
      raise UserError("give one list of prompts per photo, and at least one photo")
    if len(photos) > self.max_batch:
      raise UserError(f"at most {self.max_batch} photos per run, got {len(photos)}")
    for own in prompts:
      self.check_prompts(own)
    with self._lock:
      self._batches += 1
      batch_id = self._batches
      size = padded_size(len(photos), self.config.batch_sizes)
      images = np.stack(list(photos) + [photos[0]] * (size - len(photos)))
      report = _safe(progress)
      self._progress = report
      report("predicting" if self.predictor else "finetuning from scratch", 0.05)
      start = time.perf_counter()
      try:
        result = personalize_images(
          self.base, self.config, images, self.predictor, self._compiled, self._on_step
        )
        jax.effects_barrier()  # every step's progress reported before the next batch's begins
      finally:
        self._progress = None
      personalize_s = time.perf_counter() - start
      identities = result.identities[: len(photos)]
      meta = identities[0].meta
      self._ranks = (meta.lidb.rank if meta.lidb else 0, meta.lora_rank)
      report("sampling", 0.8)
      start = time.perf_counter()
      drawn = self._draw(identities, prompts, size)
      sample_s = time.perf_counter() - start
      report("done", 1.0)
    timings = {
      **({"predict_s": result.timings["predict_s"]} if "predict_s" in result.timings else {}),
      "finetune_s": result.timings.get("finetune_s", 0.0),
      "compile_s": result.timings.get("compile_s", 0.0),
      "personalize_s": personalize_s,
      "sample_s": sample_s,
    }
    return [
      Personalization(ident, images, list(own), batch_id, len(photos), size, dict(timings))
      for ident, images, own in zip(identities, drawn, prompts)
    ]

  def generate(self, identity: identity_lib.Identity, prompts: Sequence[str]) -> np.ndarray:
    """More images of one identity: [prompts, samples, H, W, 3] uint8 (a batch of one, padded
    like personalize's smallest)."""
    self.check_prompts(prompts)
    identity.check_compatible(self.base.sd.params, self.base.sd.fingerprint())
    ranks = (identity.meta.lidb.rank if identity.meta.lidb else 0, identity.meta.lora_rank)
    if self._ranks is not None and ranks != self._ranks:
      # another shape would compile a new sampler while every other user waits
      raise UserError(
        f"this identity has LiDB rank {ranks[0]} + LoRA rank {ranks[1]}; this service draws "
        f"identities of ranks {self._ranks[0]} + {self._ranks[1]} (make it here, or use "
        "python -m hdb_jax.generate)"
      )
    with self._lock:
      return self._draw([identity], [prompts], min(self.config.batch_sizes))[0]

  def check_prompts(self, prompts: Sequence[str]) -> None:
    """UserError unless 1..max_prompts non-empty prompts."""
    if not prompts or len(prompts) > self.config.max_prompts:
      raise UserError(f"give 1 to {self.config.max_prompts} prompts, got {len(prompts)}")
    if any(not p.strip() for p in prompts):
      raise UserError("a prompt is empty")

  def _draw(
    self,
    identities: Sequence[identity_lib.Identity],
    prompts: Sequence[Sequence[str]],
    size: int,
  ) -> list[np.ndarray]:
    """Each identity's images for its own prompts, in one sampler call of a fixed shape:
    size x max_prompts rows (padding repeats the first row), so no new prompt count compiles."""
    rows = [(ident, p) for ident, own in zip(identities, prompts) for p in own]
    total = size * self.config.max_prompts
    padded = rows + [rows[0]] * (total - len(rows))
    images = generate_rows(
      self.base.sd, padded, self.config.num_samples, self.sampling, sampler=self.sampler
    )
    out, start = [], 0
    for own in prompts:
      out.append(images[start : start + len(own)])
      start += len(own)
    return out

  def warm_up(self, progress: Progress | None = None) -> float:
    """Compiles every batch size (a blank photo each) so that no request waits for a compile;
    returns the seconds it took."""
    start = time.perf_counter()
    blank = np.zeros((self.resolution, self.resolution, 3), np.float32)
    prompts = [self.config.prompt] * self.config.max_prompts
    for size in sorted(self.config.batch_sizes):
      if progress:
        progress(f"compiling batch size {size}", 0.0)
      self.personalize([blank] * size, [prompts] * size)
    logging.info("warm in %.1f s", time.perf_counter() - start)
    return time.perf_counter() - start


def _safe(progress: Progress | None) -> Progress:
  """A progress callback whose failures are logged, never raised into a run."""

  def report(stage: str, fraction: float) -> None:
    if progress is None:
      return
    try:
      progress(stage, fraction)
    except Exception:  # pylint: disable=broad-except
      logging.exception("a progress callback failed")

  return report
