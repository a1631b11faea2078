"""The paper's metrics as pure functions of embeddings (numpy), and their confidence intervals.

- CLIP-T: cosine(CLIP image embedding of a generated image, CLIP text embedding of its prompt with
  the identifier token removed: "a {token} face on the beach" -> "a face on the beach").
- CLIP-I: cosine(CLIP image embedding of a generated image, that of the identity's reference photo).
- DINO: cosine(DINO ViT-S/16 last-layer CLS token of a generated image, that of the reference
  photo).
- Face Rec: cosine of 128-d dlib face descriptors of the generated image and the reference photo
  (hdb_jax.evaluate.faces); 0 where no face is found in either.
- World-judge (--config.judge): cosine of the world judge's identity embeddings of the generated
  image and the reference photo (hdb_jax.world.recognizer.network.load_judge): identity scored by
  a network trained apart from the hypernetwork's encoder and used for nothing else, so it is the
  world's figure reported first.
- World-ID (--config.recognizer): cosine of the world recognizer's identity embeddings of the
  generated image and the reference photo: the paper's Face Rec, on the world.
- World-prompt (--config.recognizer): the fraction of the prompt's 5 attributes (headwear, glasses,
  expression, background, style; hdb_jax.world.truth.scene) the recognizer reads right in the
  generated image: the paper's CLIP-T, on the world. Needs prompts in the world's caption grammar.
Every value lies in [-1, 1] (World-prompt in [0, 1]); means are over identities x prompts x samples,
and bootstrap_ci gives each mean's 95% interval over identities. Two methods scored on the same
photos are paired (the same identities, prompts and noise): paired_bootstrap_ci gives the interval
of their mean per-identity difference, and gap_fraction places a value on the base -> ceiling gap.
"""

import re
from typing import Any, Sequence

import numpy as np
import scipy.stats

from hdb_jax.errors import ConfigError, UserError
from hdb_jax.world.quality import attributes_right
from hdb_jax.world.truth.scene import Scene, parse_prompt

# the judge's column first among the world's (issue 29: the judge's figure is reported first)
METRICS = ("clip_t", "clip_i", "dino", "face_rec", "world_judge", "world_id", "world_prompt")
METRIC_NAMES = {
  "clip_t": "CLIP-T",
  "clip_i": "CLIP-I",
  "dino": "DINO",
  "face_rec": "Face Rec",
  "world_judge": "World-judge",
  "world_id": "World-ID",
  "world_prompt": "World-prompt",
}
JUDGE_METRICS = ("world_judge",)  # --config.judge
WORLD_METRICS = ("world_id", "world_prompt")  # --config.recognizer
FRACTIONS = ("world_prompt", "face_found")  # values in [0, 1]; every other one in [-1, 1]


def value_range(metric: str) -> tuple[float, float]:
  """The values `metric` can take (the bounds of its confidence interval)."""
  return (0.0, 1.0) if metric in FRACTIONS else (-1.0, 1.0)


def present_metrics(face_rec: bool, world: bool, judge: bool = False) -> tuple[str, ...]:
  """The metrics a run computes, in METRICS order: CLIP/DINO always, Face Rec with face_rec, the
  recognizer's WORLD_METRICS with world, the judge's World-judge with judge."""
  off = (
    (() if face_rec else ("face_rec",))
    + (() if world else WORLD_METRICS)
    + (() if judge else JUDGE_METRICS)
  )
  return tuple(m for m in METRICS if m not in off)


def cosine_similarity(x: np.ndarray, y: np.ndarray, eps: float = 1e-12) -> np.ndarray:
  """Cosine similarity along the last axis, broadcasting the others; values clipped to [-1, 1]."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  norms = np.maximum(np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1), eps)
  return np.clip(np.sum(x * y, axis=-1) / norms, -1.0, 1.0)


def similarity_matrix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """[N, D], [M, D] -> [N, M] cosine similarities."""
  return cosine_similarity(np.asarray(x)[:, None, :], np.asarray(y)[None, :, :])


def face_similarities(
  generated: Sequence[np.ndarray | None], reference: np.ndarray | None
) -> np.ndarray:
  """Face Rec per generated image: cosine of descriptors, 0 where a face is missing on either
  side."""
  return np.asarray(
    [
      0.0 if g is None or reference is None else float(cosine_similarity(g, reference))
      for g in generated
    ]
  )


def prompt_without_token(prompt: str) -> str:
  """The CLIP-T text: the prompt with '{token}' (and the space it leaves) removed."""
  return re.sub(r"\s+", " ", prompt.replace("{token}", "")).strip()


def score_identity(
  clip_images: np.ndarray,
  clip_texts: np.ndarray,
  clip_reference: np.ndarray,
  dino_images: np.ndarray,
  dino_reference: np.ndarray,
) -> dict[str, np.ndarray]:
  """One identity's CLIP-T, CLIP-I and DINO values [P, S].

  clip_images, dino_images: [P, S, D] (prompts x samples); clip_texts [P, D]; references [D].
  """
  return {
    "clip_t": cosine_similarity(clip_images, clip_texts[:, None, :]),
    "clip_i": cosine_similarity(clip_images, clip_reference),
    "dino": cosine_similarity(dino_images, dino_reference),
  }


def mean_of(values: Sequence[float] | np.ndarray) -> float:
  values = np.asarray(values, np.float64)
  return float(values.mean()) if values.size else float("nan")


def world_scenes(prompts: Sequence[str]) -> list[Scene]:
  """The scene each prompt asks for (the world's caption grammar, '{token}' removed); ConfigError
  naming the first prompt outside it."""
  scenes = []
  for prompt in prompts:
    try:
      scenes.append(parse_prompt(prompt_without_token(prompt)))
    except UserError as error:
      raise ConfigError(
        f"prompt {prompt!r} is not a world prompt, and --config.recognizer needs world prompts: "
        "the caption grammar of hdb_jax.world.truth.scene, e.g. 'a {token} face wearing a red hat "
        f"in pencil sketch style', or the set --config.prompts=world ({error})"
      ) from error
  return scenes


def world_prompt_values(recognizer: Any, images: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
  """World-prompt per image: images [N, H, W, 3], prompts [N] (with '{token}') -> [N], the
  fraction of the 5 attributes recognizer.read gets as the prompt asks."""
  texts = [prompt_without_token(p) for p in prompts]
  return attributes_right(recognizer, images, texts).mean(axis=1).astype(np.float64)


def world_scores(
  images: np.ndarray,
  prompts: Sequence[str],
  judge: tuple[Any, np.ndarray] | None = None,
  recognizer: tuple[Any, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
  """The world's metrics of images [N, H, W, 3] of one identity, each drawn for its prompt [N]
  (with '{token}'): World-judge with judge = (the judge, its embedding [D'] of the reference
  photo), World-ID and World-prompt with recognizer = (the recognizer, its embedding [D] of the
  reference) -> {metric: [N]}; a None pair leaves its metrics out."""
  scores = {}
  if judge is not None:
    network, reference = judge
    scores["world_judge"] = cosine_similarity(network.embed(images), reference)
  if recognizer is not None:
    network, reference = recognizer
    scores["world_id"] = cosine_similarity(network.embed(images), reference)
    scores["world_prompt"] = world_prompt_values(network, images, prompts)
  return scores


def identity_entry(scores: dict[str, np.ndarray], prompts: Sequence[str]) -> dict[str, Any]:
  """One identity's part of a results.json method entry from its scores {metric: [P, S]} (P: the
  prompts, S: samples each): {'means': {metric: mean}, 'prompts': {prompt: {metric: [S values],
  'means': {metric: mean}}}}."""
  per_prompt = {}
  for p, prompt in enumerate(prompts):
    values = {key: [float(v) for v in array[p]] for key, array in scores.items()}
    per_prompt[prompt] = {**values, "means": {k: mean_of(v) for k, v in values.items()}}
  return {"means": {k: mean_of(v) for k, v in scores.items()}, "prompts": per_prompt}


def pooled_summary(per_identity_scores: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
  """A method entry's 'means' (over every identity's values) and 'ci95' (bootstrap_ci over
  identities) from each identity's scores {metric: [P, S]}."""
  keys = list(dict.fromkeys(k for scores in per_identity_scores for k in scores))
  values = {k: [np.ravel(s[k]) for s in per_identity_scores if k in s] for k in keys}
  return {
    "means": {k: mean_of(np.concatenate(v)) for k, v in values.items()},
    "ci95": {k: list(bootstrap_ci(v, bounds=value_range(k))) for k, v in values.items()},
  }


def bootstrap_ci(
  per_identity_values: Sequence[np.ndarray],
  confidence: float = 0.95,
  resamples: int = 1000,
  seed: int = 0,
  bounds: tuple[float, float] = (-np.inf, np.inf),
) -> tuple[float, float]:
  """(low, high): a `confidence` interval for the mean over every value (the pooled mean that
  `means` reports), from each identity's values [any shape].

  Two or more identities: a percentile bootstrap over identities (resampled with replacement,
  `resamples` times, numpy's generator at `seed`): identities are the independent draws, the
  prompts and samples of one identity are not. With few identities it covers the mean less often
  than asked (its known O(1/n) shortfall; measured for 95% on normal identities, 1,000 trials
  each: 0.85 at n = 5, 0.90 at n = 10, 0.92 at n = 20, 0.93 at n = 30, 0.94 at n = 50).
  One identity: a t-interval over its values (it measures how its prompts and samples vary and
  says nothing of other identities; 0.95 measured on normal values), clipped to `bounds`, the
  values' range (with 2 images t is 12.7 and the interval can leave it). One value: (value,
  value). No values: (nan, nan).
  """
  arrays = [np.asarray(v, np.float64).ravel() for v in per_identity_values]
  arrays = [a for a in arrays if a.size]
  if not arrays:
    return float("nan"), float("nan")
  alpha = 1.0 - confidence
  if len(arrays) == 1:
    values = arrays[0]
    mean = float(values.mean())
    if values.size == 1:
      return mean, mean
    half = scipy.stats.t.ppf(1 - alpha / 2, values.size - 1) * values.std(ddof=1)
    half /= np.sqrt(values.size)
    return max(mean - float(half), bounds[0]), min(mean + float(half), bounds[1])
  sums = np.asarray([a.sum() for a in arrays])
  counts = np.asarray([a.size for a in arrays], np.float64)
  return _percentile_interval(sums, counts, confidence, resamples, seed)


def resample_identities(n: int, resamples: int = 1000, seed: int = 0) -> np.ndarray:
  """int [resamples, n]: the bootstrap's draws, n identities resampled with replacement
  `resamples` times (numpy's generator at `seed`); every interval here uses these draws."""
  return np.random.default_rng(seed).integers(0, n, (resamples, n))


def percentile_interval(statistics: np.ndarray, confidence: float) -> tuple[float, float]:
  """(low, high): the `confidence` percentile interval of a statistic's bootstrap values [R]."""
  alpha = 1.0 - confidence
  low, high = np.quantile(statistics, [alpha / 2, 1 - alpha / 2])
  return float(low), float(high)


def _percentile_interval(
  sums: np.ndarray, counts: np.ndarray, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
  """The percentile bootstrap over identities that bootstrap_ci and paired_bootstrap_ci share:
  identities (their value sums [n] and counts [n]) resampled (resample_identities), each
  resample's pooled mean sum / count; (low, high) the `confidence` interval of those means."""
  draws = resample_identities(len(sums), resamples, seed)
  return percentile_interval(sums[draws].sum(axis=1) / counts[draws].sum(axis=1), confidence)


def paired_bootstrap_ci(
  a_per_identity: Sequence[np.ndarray],
  b_per_identity: Sequence[np.ndarray],
  confidence: float = 0.95,
  resamples: int = 1000,
  seed: int = 0,
) -> tuple[float, float, float]:
  """(mean difference, low, high): how much a beats b, paired by identity.

  a_per_identity, b_per_identity: each identity's values [any shape] under two methods, the same
  identities in the same order (ValueError if the counts differ). Each identity's difference
  d_i = mean(a_i) - mean(b_i); the mean difference is mean_i d_i and (low, high) its `confidence`
  interval by the percentile bootstrap over identities (as bootstrap_ci's, with the same
  resamples and seed). Pairing removes what the identities share under both methods (one face is
  easier than another), so with correlated methods the interval is far narrower than either
  method's own. One identity: (d, nan, nan), as one identity says nothing of others; none, or an
  identity without values: nan where undefined.
  """
  if len(a_per_identity) != len(b_per_identity):
    raise ValueError(
      f"paired identities differ in number: {len(a_per_identity)} and {len(b_per_identity)} (pair "
      "the same identities in the same order)"
    )
  differences = np.asarray(
    [mean_of(np.ravel(a)) - mean_of(np.ravel(b)) for a, b in zip(a_per_identity, b_per_identity)],
    np.float64,
  )
  mean = mean_of(differences)
  if len(differences) < 2 or not np.all(np.isfinite(differences)):
    return mean, float("nan"), float("nan")
  low, high = _percentile_interval(
    differences, np.ones_like(differences), confidence, resamples, seed
  )
  return mean, low, high


def gap_fraction(value: float, base: float, ceiling: float) -> float:
  """(value - base) / (ceiling - base): how far value goes from the base model's score (0) to the
  ceiling's (1); nan where ceiling == base."""
  return float("nan") if ceiling == base else (value - base) / (ceiling - base)
