"""Statistics over evaluation method entries (results.json's `methods[name]`) for the paper's
tables (benchmarks/world_tables.py): paired_difference compares two methods' entries (of one
results.json or of two over the same photos) identity by identity; render_ceiling scores the same
identity rendered (the ceiling a method's identity score can reach) as a method entry;
gap_fraction_interval places an entry on the base -> ceiling gap; select_setting is the stated rule
that picks a tuning grid's setting (by the recognizer: the judge selects nothing).
"""

from typing import Any, Sequence

import numpy as np

from hdb_jax.evaluate.metrics import (
  gap_fraction,
  identity_entry,
  paired_bootstrap_ci,
  percentile_interval,
  pooled_summary,
  resample_identities,
  world_scenes,
  world_scores,
)
from hdb_jax.world.truth.render import render as render_world


def paired_difference(
  method_a: dict[str, Any], method_b: dict[str, Any], metric: str, **bootstrap: Any
) -> tuple[float, float, float]:
  """(mean difference a - b, low, high) of `metric` over identities, paired by identity name:
  metrics.paired_bootstrap_ci on each identity's mean (results.json methods[name]['identities']
  [identity]['means']). The entries may come from two results.json of the same photos and
  prompts (their noise is paired too: it is drawn per identity index); ValueError unless both
  hold the same identities and the metric. bootstrap: paired_bootstrap_ci's confidence,
  resamples, seed."""
  names_a, names_b = list(method_a["identities"]), list(method_b["identities"])
  if sorted(names_a) != sorted(names_b):
    raise ValueError(
      "the two methods were evaluated on different identities: only in the first "
      f"{sorted(set(names_a) - set(names_b))}, only in the second "
      f"{sorted(set(names_b) - set(names_a))}"
    )

  def means(method: dict[str, Any]) -> list[np.ndarray]:
    values = []
    for name in names_a:
      identity_means = method["identities"][name]["means"]
      if metric not in identity_means:
        raise ValueError(f"identity {name!r} has no {metric!r} (it has {sorted(identity_means)})")
      values.append(np.asarray([identity_means[metric]], np.float64))
    return values

  return paired_bootstrap_ci(means(method_a), means(method_b), **bootstrap)


def _identity_means(method: dict[str, Any], names: Sequence[str], metric: str) -> np.ndarray:
  """float64 [len(names)]: each named identity's mean of `metric` in a method entry."""
  return np.asarray([method["identities"][n]["means"][metric] for n in names], np.float64)


def gap_fraction_interval(
  method: dict[str, Any],
  base: dict[str, Any],
  ceiling: dict[str, Any],
  metric: str,
  confidence: float = 0.95,
  resamples: int = 1000,
  seed: int = 0,
) -> tuple[float, float, float]:
  """(fraction, low, high): metrics.gap_fraction of the method's mean between the base's (0) and
  the ceiling's (1), and its `confidence` interval by the percentile bootstrap over identities
  (one resample of identities, with replacement, feeds all three means, so what an identity
  shares under the three cancels). The entries hold the same identities (by name; the method's
  order); ValueError otherwise. Fewer than two identities: (fraction, nan, nan)."""
  names = list(method["identities"])
  for other in (base, ceiling):
    if sorted(other["identities"]) != sorted(names):
      raise ValueError("gap_fraction_interval: the entries hold different identities")
  values = np.stack([_identity_means(e, names, metric) for e in (method, base, ceiling)])  # [3, N]
  fraction = gap_fraction(*(float(v) for v in values.mean(axis=1)))
  if len(names) < 2 or not np.all(np.isfinite(values)):
    return fraction, float("nan"), float("nan")
  means = values[:, resample_identities(len(names), resamples, seed)].mean(axis=2)  # [3, resamples]
  gap = means[2] - means[1]
  with np.errstate(divide="ignore", invalid="ignore"):
    fractions = np.where(gap == 0, np.nan, (means[0] - means[1]) / gap)
  fractions = fractions[np.isfinite(fractions)]
  if not fractions.size:
    return fraction, float("nan"), float("nan")
  return (fraction, *percentile_interval(fractions, confidence))


def render_ceiling(
  identities: Sequence[int],
  names: Sequence[str],
  prompts: Sequence[str],
  views: int,
  judge: Any | None,
  recognizer: Any | None,
  resolution: int = 64,
  data_seed: int = 0,
) -> dict[str, Any]:
  """The same identity, rendered: the ceiling of a method's identity score, as a results.json
  method entry (per identity and prompt its values, their means, `ci95` as the evaluation's).

  World identity ids [N] (their evaluation names [N]): the reference is each one's photo as
  source.save_photos writes it (its render in the default scene, view 0); for every prompt
  (with '{token}', in the world's caption grammar) it is rendered in the prompt's scene in
  `views` views of its own that are not the photo's (ids 1 + p * views + k for prompt p and sample
  k, so no two images share one), then scored as the evaluation scores a sample: World-judge by
  `judge`, World-ID and World-prompt by `recognizer` (a world Recognizer each; None leaves its
  metrics out). Values per identity [P, views]; no finetune and no time (None)."""
  if len(identities) != len(names):
    raise ValueError(f"{len(identities)} identities but {len(names)} names")
  scenes = world_scenes(prompts)
  all_scores, per_identity = [], {}
  for identity, name in zip(identities, names):
    reference = render_world(identity, 0, None, resolution, data_seed)[None]  # [1, R, R, 3]
    images = np.stack([render_world(identity, 1 + p * views + k, scene, resolution, data_seed)
                       for p, scene in enumerate(scenes) for k in range(views)])  # fmt: skip
    scores = world_scores(
      images,
      [p for p in prompts for _ in range(views)],
      (judge, judge.embed(reference)[0]) if judge is not None else None,
      (recognizer, recognizer.embed(reference)[0]) if recognizer is not None else None,
    )
    scores = {k: v.reshape(len(prompts), views) for k, v in scores.items()}
    all_scores.append(scores)
    per_identity[name] = identity_entry(scores, prompts)
  return {
    "description": f"the same identity rendered in the prompt's scene, {views} other view(s) each",
    "finetune_steps": None,
    "hypernetwork": False,
    **pooled_summary(all_scores),
    "timings_s": {},
    "seconds_per_identity": None,
    "identities": per_identity,
  }


PROMPT_FLOOR = 0.88  # select_setting: the World-prompt a tuned setting must keep


def select_setting(
  means: Sequence[dict[str, float]], prompt_floor: float = PROMPT_FLOOR
) -> tuple[int, bool]:
  """The tuning grids' stated rule: (index of the chosen setting, whether the rule's floor was
  met). means: each setting's validation means ({'world_id': ..., 'world_prompt': ...}). Chosen:
  the highest World-ID (the recognizer's) among the settings whose World-prompt >= prompt_floor;
  when none reaches it, the highest World-ID of all (False). A NaN World-ID is never chosen over
  a number. The judge selects nothing (its numbers are not read)."""
  if not means:
    raise ValueError("select_setting: no settings")

  def identity(i: int) -> float:
    value = means[i].get("world_id", float("nan"))
    return -np.inf if value is None or not np.isfinite(value) else float(value)

  qualified = [i for i, m in enumerate(means) if (m.get("world_prompt") or 0.0) >= prompt_floor]
  pool = qualified or list(range(len(means)))
  return max(pool, key=identity), bool(qualified)
