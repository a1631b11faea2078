"""How well the recognizer knows the world, on identities it never saw.

World-ID: each held-out identity's reference render (a photo, default scene, view 0) against a
render of every held-out identity in a random scene of each style (another view): ROC AUC and the
true-accept rate at a 1% false-accept rate, per style. World-prompt: per-attribute accuracy on
held-out renders in random scenes.
"""

from typing import Any

import numpy as np

from hdb_jax.world import sampling
from hdb_jax.world.render import render
from hdb_jax.world.scene import ATTRIBUTES, Scene, attribute_indices
from hdb_jax.world.styles import STYLES


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
  """P(a genuine score > an impostor score), ties counted half (the Mann-Whitney statistic)."""
  genuine, impostor = np.asarray(genuine, np.float64), np.asarray(impostor, np.float64)
  order = np.sort(impostor)
  below = np.searchsorted(order, genuine, side="left")
  ties = np.searchsorted(order, genuine, side="right") - below
  return float(np.mean((below + 0.5 * ties) / len(order)))


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float = 0.01) -> float:
  """The fraction of genuine scores above the threshold that (1 - far) of impostors fall below."""
  threshold = np.quantile(np.asarray(impostor, np.float64), 1.0 - far)
  return float(np.mean(np.asarray(genuine) > threshold))


def reference_renders(identities: list[int], resolution: int, data_seed: int) -> np.ndarray:
  """uint8 [N, R, R, 3]: each identity as a photo in the default scene, view 0."""
  return np.stack([render(i, 0, Scene(), resolution, data_seed) for i in identities])


def style_probes(identities: list[int], style: str, resolution: int, data_seed: int) -> np.ndarray:
  """uint8 [N, R, R, 3]: each identity in a random scene of `style`, another view."""
  rng = np.random.default_rng([data_seed, 0x57, list(STYLES).index(style)])
  images = []
  for identity in identities:
    scene = sampling.random_scene(rng)
    scene = Scene(**{**scene.__dict__, "style": style})
    images.append(render(identity, 1 + int(rng.integers(1000)), scene, resolution, data_seed))
  return np.stack(images)


def verification_scores(
  recognizer: Any, references: np.ndarray, probes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """(genuine [N], impostor [N (N - 1)]) cosine similarities: probe i against reference i, and
  against every other reference."""
  sims = recognizer.embed(probes) @ recognizer.embed(references).T
  off = ~np.eye(len(sims), dtype=bool)
  return np.diag(sims), sims[off]


def evaluate(
  recognizer: Any, num_identities: int, prompt_images: int, data_seed: int, resolution: int = 64
) -> dict[str, Any]:
  """{'world_id': {style | 'all': {'auc', 'tar_at_far_1pct'}}, 'world_prompt': {attribute:
  accuracy}} on held-out identities."""
  identities = sampling.held_out_identities(num_identities)
  references = reference_renders(identities, resolution, data_seed)
  world_id, every_genuine, every_impostor = {}, [], []
  for style in STYLES:
    genuine, impostor = verification_scores(
      recognizer, references, style_probes(identities, style, resolution, data_seed)
    )
    world_id[style] = {"auc": roc_auc(genuine, impostor),
                       "tar_at_far_1pct": tar_at_far(genuine, impostor)}  # fmt: skip
    every_genuine.append(genuine)
    every_impostor.append(impostor)
  genuine, impostor = np.concatenate(every_genuine), np.concatenate(every_impostor)
  world_id["all"] = {"auc": roc_auc(genuine, impostor),
                     "tar_at_far_1pct": tar_at_far(genuine, impostor)}  # fmt: skip
  rng = np.random.default_rng([data_seed, 0xA7])
  scenes = [sampling.random_scene(rng) for _ in range(prompt_images)]
  ids = sampling.held_out_identities(prompt_images, start=num_identities)
  images = np.stack([render(i, 1, s, resolution, data_seed) for i, s in zip(ids, scenes)])
  read = recognizer.read(images)
  truth = np.asarray([attribute_indices(s) for s in scenes])
  world_prompt = {name: float(np.mean(read[name] == truth[:, k]))
                  for k, name in enumerate(ATTRIBUTES)}  # fmt: skip
  return {"world_id": world_id, "world_prompt": world_prompt}
