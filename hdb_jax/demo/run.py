"""The demo's stages on the world model: a short Phase 0 and Phase 1, then Phase 2 with a trained
hypernetwork on held-out world faces and the astronaut, the exports, and the evaluation.

Every stage runs through its library call with its package config (hdb_jax.config.phases, the same
configs configs/*.py give) at the world variant, cut down or adjusted by `DemoSettings`.
"""

import contextlib
import dataclasses
import logging
import os
import time
from typing import Any, Callable, Iterator

import jax
from PIL import Image

from hdb_jax import data
from hdb_jax.config import phases
from hdb_jax.errors import MissingFileError, UserError
from hdb_jax.evaluate.loop import evaluate
from hdb_jax.evaluate.prompts import resolve_prompts
from hdb_jax.formats.hypernet_card import read_card
from hdb_jax.formats.hypernet_export import TENSORS, export_hypernet, is_exported
from hdb_jax.formats.hypernet_loading import WORLD, WORLD_HYPERNET_DIR, resolve_hypernet
from hdb_jax.formats.weights_dataset import WeightsDataset
from hdb_jax.personalize.loop import personalize
from hdb_jax.preoptimize.loop import preoptimize
from hdb_jax.train.loop import train
from hdb_jax.world.truth.sampling import split_identities
from hdb_jax.world.truth.source import save_photos

# Of the world prompt set (evaluate/prompts.py WORLD): the bare face, a hat, glasses, a background,
# a style, and a hat, a background and a style at once.
DEMO_PROMPTS = (
  "a {token} face",
  "a {token} face wearing a red hat",
  "a {token} face with sunglasses",
  "a {token} face on a beach",
  "a {token} face in pop-art style",
  "a {token} face wearing a blue hat in a forest in watercolour style",
)
PHASE1 = "phase1"  # --hypernet: this run's own Phase 1 (WORKDIR/hyper)
AUTO = "auto"  # --hypernet: the shipped world hypernetwork if installed, else PHASE1


def _flag(text: str, lower_bound: int | None = None, **default: Any) -> Any:
  """A DemoSettings field: its default (default= or default_factory=) and its flag's help."""
  return dataclasses.field(**default, metadata={"help": text, "lower_bound": lower_bound})


def _world(key: str) -> Callable[[], Any]:
  """The world personalization config's value of `key` (the demo follows the config)."""
  return lambda: phases.personalization_config("world")[key]


@dataclasses.dataclass(frozen=True)
class DemoSettings:
  """What the demo's flags set (python -m hdb_jax.demo --help): every field is the flag of its
  name, its metadata the flag's help."""

  identities: int = _flag(
    "World training faces for Phase 0 (one is held out of Phase 1).", 2, default=4
  )
  preoptimize_steps: int = _flag("Phase 0 steps (every face in one batch).", 1, default=40)
  hyper_steps: int = _flag("Phase 1 steps.", 1, default=40)
  hyper_batch: int = _flag("Phase 1 batch size.", 1, default=4)
  hypernet: str = _flag(
    "Phase 2's hypernetwork: 'auto' (the shipped world hypernetwork when this installation has "
    "one, else 'phase1'), 'world' (the shipped one), 'phase1' (this run's short Phase 1, which has "
    "learnt little), or a Phase 1 WORKDIR or export directory.",
    default=AUTO,
  )
  faces: int = _flag("Held-out world faces (test split) personalized and evaluated.", 1, default=3)
  finetune_steps: int = _flag(
    "Rank-relaxed finetune steps per photo (default: the world config's).",
    0,
    default_factory=_world("steps"),
  )
  sample_steps: int = _flag(
    "DDIM steps per image (default: the world config's).", 1, default_factory=_world("sample_steps")
  )
  prompts: str = _flag(
    "Prompts of the samples and the evaluation: 'p1|p2' (world grammar, with {token}) or 'world'.",
    default="|".join(DEMO_PROMPTS),
  )
  evaluate: bool = _flag(
    "Evaluate the world faces (World-judge, World-ID, World-prompt).", default=True
  )
  methods: str = _flag(
    "The evaluation's methods (hdb_jax/evaluate/methods.py); add no_hyper,k1 for all of the "
    "paper's Table 3.",
    default="base,only_hyper,full",
  )
  pretrained: str = _flag(
    "Base model of every stage: 'world' or a world model's dir.", default="world"
  )


@dataclasses.dataclass(frozen=True)
class DemoRun:
  """What the stages wrote that the report shows (paths under WORKDIR, but for the hypernetwork)."""

  settings: DemoSettings
  dataset: WeightsDataset  # Phase 0's weights
  hyper_dir: str  # Phase 1's WORKDIR
  held_out: str  # the training face Phase 1 held out
  hypernet: str  # the hypernetwork Phase 2 used (a directory)
  phase1_export: str  # this run's Phase 1 hypernetwork exported: DIR/hypernet.safetensors
  hypernet_export: str | None  # the tensors of Phase 2's hypernetwork if it is an export
  prompts: list[str]
  world_photos: list[str]  # the held-out world faces' photos
  astronaut: str  # the out-of-domain photo
  outputs: list[str]  # Phase 2's output directory per photo (world faces, then the astronaut)
  evaluation: dict[str, Any] | None  # WORKDIR/evaluation/results.json


# JAX's spans of tracing, lowering and XLA compiling (or loading from the persistent cache)
COMPILE_EVENTS = (
  "/jax/core/compile/jaxpr_trace_duration",
  "/jax/core/compile/jaxpr_to_mlir_module_duration",
  "/jax/core/compile/backend_compile_duration",
)


class StageTimer:
  """Wall seconds per stage, and how many of them JAX spent compiling (its compile events' time
  spans, overlaps merged, so a jit traced inside another counts once)."""

  def __init__(self):
    self.seconds: dict[str, float] = {}
    self.compiling: dict[str, float] = {}
    self._spans: list[tuple[float, float]] = []

  def _on_span(self, event: str, start: float, end: float, **unused: Any) -> None:
    if event in COMPILE_EVENTS:
      self._spans.append((start, end))

  def __enter__(self) -> "StageTimer":
    jax.monitoring.register_event_time_span_listener(self._on_span)
    return self

  def __exit__(self, *exc: Any) -> None:
    jax.monitoring.unregister_event_time_span_listener(self._on_span)

  @contextlib.contextmanager
  def stage(self, name: str) -> Iterator[None]:
    first, start = len(self._spans), time.perf_counter()
    yield
    self.seconds[name] = time.perf_counter() - start
    self.compiling[name] = merged_length(self._spans[first:])


def merged_length(spans: list[tuple[float, float]]) -> float:
  """Seconds covered by the union of [start, end) spans."""
  total, reach = 0.0, float("-inf")
  for start, end in sorted(spans):
    total += max(0.0, end - max(start, reach))
    reach = max(reach, end)
  return total


def astronaut_photo(path: str) -> str:
  """The scikit-image astronaut (a real photo shipped with scikit-image) at `path`."""
  try:
    import skimage.data  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise UserError(
      "the demo's real photo comes with scikit-image: pip install -e '.[demo]'"
    ) from e
  Image.fromarray(skimage.data.astronaut()).save(path)
  return path


def phase2_config(config: Any, settings: DemoSettings, photos: list[str], hypernet: str) -> Any:
  """A Phase 2 config (personalize or evaluate) set to the demo's photos, model, hypernetwork and
  steps, 1 sample per prompt."""
  config.pretrained, config.hypernet = settings.pretrained, hypernet
  config.images = ",".join(photos)
  config.steps, config.sample_steps = settings.finetune_steps, settings.sample_steps
  config.num_samples, config.overwrite = 1, True
  return config


def phase2_hypernet(settings: DemoSettings, hyper_dir: str) -> str:
  """The directory of --hypernet, checked before any training (a hypernetwork's card must be
  there), so that a missing one fails at once."""
  if settings.hypernet == PHASE1:
    return hyper_dir
  try:
    path = resolve_hypernet(settings.hypernet)
  except MissingFileError as e:
    hint = f"the demo's flag is --hypernet=DIR; --hypernet={PHASE1} uses this run's short Phase 1"
    raise MissingFileError(f"{e} ({hint})") from e
  read_card(path)
  return path


def resolve_auto(settings: DemoSettings) -> DemoSettings:
  """--hypernet=auto made explicit: 'world' when the shipped world hypernetwork is installed, else
  'phase1' (said in the log and the report)."""
  if settings.hypernet != AUTO:
    return settings
  if is_exported(WORLD_HYPERNET_DIR):
    return dataclasses.replace(settings, hypernet=WORLD)
  logging.warning(
    "the world hypernetwork is not in this installation (%s): Phase 2 uses this run's short "
    "Phase 1 (--hypernet=phase1)",
    WORLD_HYPERNET_DIR,
  )
  return dataclasses.replace(settings, hypernet=PHASE1)


def run_phases(workdir: str, settings: DemoSettings, timer: StageTimer) -> DemoRun:
  """Every stage in order, into WORKDIR/{phase0,hyper,hypernet_export,photos,personalized,
  evaluation}."""
  settings = resolve_auto(settings)
  hyper_dir = os.path.join(workdir, "hyper")
  hypernet = phase2_hypernet(settings, hyper_dir)
  prompts = resolve_prompts(settings.prompts)
  # the first held-out world faces of the test split
  world_photos = save_photos(
    os.path.join(workdir, "photos"), split_identities("test", settings.faces)
  )
  astronaut = astronaut_photo(os.path.join(workdir, "photos", "astronaut.png"))
  photos = world_photos + [astronaut]
  with timer.stage("phase 0: pre-optimize"):
    phase0 = phases.preoptimize_config("world")
    phase0.pretrained, phase0.steps = settings.pretrained, settings.preoptimize_steps
    phase0.num_identities = phase0.identities_per_step = settings.identities
    dataset = preoptimize(phase0, os.path.join(workdir, "phase0"))
  with timer.stage("phase 1: train the hypernetwork"):
    hyper = phases.hyper_config("world")
    hyper.weights, hyper.pretrained = dataset.directory, settings.pretrained
    hyper.data.num_identities, hyper.batch_size = settings.identities, settings.hyper_batch
    hyper.steps = hyper.checkpoint_every = hyper.eval.every = settings.hyper_steps
    hyper.log_every = max(1, settings.hyper_steps // 20)
    hyper.optim.warmup_steps = min(hyper.optim.warmup_steps, settings.hyper_steps // 4)
    hyper.eval.num_identities, hyper.eval.samples = 1, False  # losses only
    train(hyper, hyper_dir)
    _, (held_out,) = data.split_identities(sorted(dataset.identity_ids()), 1)
  with timer.stage("export the hypernetwork"):
    phase1_export = os.path.join(workdir, "hypernet_export")
    export_hypernet(hyper_dir, phase1_export, overwrite=True)
  with timer.stage(f"phase 2: personalize {len(photos)} photos in one batch (+ samples, export)"):
    config = phase2_config(phases.personalize_config("world"), settings, photos, hypernet)
    config.sample_prompts = prompts
    outputs = personalize(config, os.path.join(workdir, "personalized"))
  results = None
  if settings.evaluate:
    with timer.stage(f"evaluate {len(world_photos)} world faces: {settings.methods}"):
      config = phase2_config(phases.evaluate_config("world"), settings, world_photos, hypernet)
      config.methods, config.prompts = settings.methods, "|".join(prompts)
      # every face in one batch; a face's prompts in one sampling call, as Phase 2 samples them
      # (the same shapes: those sampling programs compile once)
      config.identities_per_batch, config.sample_batch = len(world_photos), len(prompts)
      results = evaluate(config, os.path.join(workdir, "evaluation"))
  return DemoRun(
    settings=settings,
    dataset=dataset,
    hyper_dir=hyper_dir,
    held_out=held_out,
    hypernet=hypernet,
    phase1_export=os.path.join(phase1_export, TENSORS),
    hypernet_export=os.path.join(hypernet, TENSORS) if is_exported(hypernet) else None,
    prompts=prompts,
    world_photos=world_photos,
    astronaut=astronaut,
    outputs=outputs,
    evaluation=results,
  )
