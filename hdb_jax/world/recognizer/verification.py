"""How well a recognizer or the judge knows the world, on identities it never saw.

World-ID: each held-out identity's reference render (a photo, default scene, view 0) against a
render of every held-out identity in a random scene of each style (another view): ROC AUC, the
true-accept rate at a 1% false-accept rate and top-1 identification, per style. Calibration: the
similarity of probes to the reference photo: the same identity in another view in each single
context or style (the render ceiling), another identity (the impostor floor), another identity in
the reference's own clothing, framing and light (the shirt probe: near the floor when identity is
the face), the same identity in another colour of clothing. Face parameters (a judge): R² of each
parameter read from held-out renders, accuracy for categories. World-prompt (a recognizer):
per-attribute accuracy on held-out renders in random scenes.
"""

import dataclasses
from typing import Any

import numpy as np

from hdb_jax.world.truth import faces, sampling
from hdb_jax.world.truth.render import render
from hdb_jax.world.truth.scene import ATTRIBUTES, Scene, attribute_indices, caption
from hdb_jax.world.truth.styles import STYLES


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
  return genuine_and_impostor(recognizer.embed(probes) @ recognizer.embed(references).T)


def genuine_and_impostor(sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """A probe x reference similarity matrix [N, N] -> (its diagonal [N], the rest [N (N - 1)])."""
  return np.diag(sims), sims[~np.eye(len(sims), dtype=bool)]


def single_scenes() -> list[Scene]:
  """The default scene and each single context or style value (the others at their default)."""
  scenes = [Scene()]
  for name, values in ATTRIBUTES.items():
    scenes += [Scene(**{name: value}) for value in values[1:]]
  return scenes


def _summary(scores: np.ndarray) -> dict[str, float]:
  scores = np.asarray(scores, np.float64)
  return {"mean": float(scores.mean()), "p5": float(np.quantile(scores, 0.05)),
          "p95": float(np.quantile(scores, 0.95))}  # fmt: skip


def calibration(
  recognizer: Any, identities: list[int], references: np.ndarray, resolution: int, data_seed: int
) -> dict[str, dict[str, float]]:
  """{probe name: {'mean', 'p5', 'p95'}} cosine similarities to each identity's reference photo
  (view 0, default scene); see the module docstring for the probes."""
  reference = recognizer.embed(references)
  n = len(identities)
  impostors = [identities[(k + 1) % n] for k in range(n)]
  views = [faces.draw_view(data_seed, i, 0) for i in identities]

  def similarity(images: list[np.ndarray]) -> np.ndarray:
    return np.sum(recognizer.embed(np.stack(images)) * reference, axis=-1)

  probes = {}
  for scene in single_scenes():
    name = f"same identity, another view: '{caption(scene)}'"
    probes[name] = similarity([render(i, 7, scene, resolution, data_seed) for i in identities])
  probes["another identity (impostor floor)"] = similarity(
    [render(j, 7, Scene(), resolution, data_seed) for j in impostors])  # fmt: skip
  probes["another identity in the reference's clothing, framing and light (shirt probe)"] = (
    similarity([render(j, 0, Scene(), resolution, data_seed, view=v)
                for j, v in zip(impostors, views)]))  # fmt: skip
  recoloured = [dataclasses.replace(v, clothing=tuple(1.0 - c for c in v.clothing)) for v in views]
  probes["same identity, its clothing recoloured"] = similarity(
    [render(i, 0, Scene(), resolution, data_seed, view=v)
     for i, v in zip(identities, recoloured)])  # fmt: skip
  return {name: _summary(scores) for name, scores in probes.items()}


def face_params_recovery(
  recognizer: Any, identities: list[int], images: np.ndarray, data_seed: int
) -> dict[str, float]:
  """{parameter: R² (categories and the mole's presence: accuracy)} of the face parameters read
  from images [N, H, W, 3] of `identities` against their ground truth."""
  read = recognizer.face_params(images)
  truth = np.stack([faces.identity_params(data_seed, i) for i in identities])
  has_mole = truth[:, faces.PARAM_NAMES.index("mole")] > 0.5
  out = {}
  for k, name in enumerate(faces.PARAM_NAMES):
    if name in faces.CATEGORIES:
      out[name] = float(np.mean([faces.category(r, name) == faces.category(t, name)
                                 for r, t in zip(read, truth)]))  # fmt: skip
    elif name == "mole":
      out[name] = float(np.mean((read[:, k] > 0.5) == has_mole))
    else:
      rows = has_mole if name in ("mole_x", "mole_y") else np.ones(len(truth), bool)
      residual = np.sum(np.square(read[rows, k] - truth[rows, k]))
      spread = np.sum(np.square(truth[rows, k] - truth[rows, k].mean()))
      out[name] = float(1 - residual / spread) if spread > 1e-9 else float("nan")
  return out


def evaluate(
  recognizer: Any, num_identities: int, prompt_images: int, data_seed: int, resolution: int = 64
) -> dict[str, Any]:
  """{'world_id': {style | 'all': {'auc', 'tar_at_far_1pct'}}, 'calibration': {'probes': ...,
  'top1': {style: rate}}, 'face_params': {parameter: R²} (a judge), 'world_prompt': {attribute:
  accuracy} (a recognizer)} on held-out identities."""
  identities = sampling.held_out_identities(num_identities)
  references = reference_renders(identities, resolution, data_seed)
  embedded = recognizer.embed(references)
  world_id, top1, every_genuine, every_impostor, every_probe = {}, {}, [], [], []
  for style in STYLES:
    probes = style_probes(identities, style, resolution, data_seed)
    sims = recognizer.embed(probes) @ embedded.T
    genuine, impostor = genuine_and_impostor(sims)
    world_id[style] = {"auc": roc_auc(genuine, impostor),
                       "tar_at_far_1pct": tar_at_far(genuine, impostor)}  # fmt: skip
    top1[style] = float(np.mean(np.argmax(sims, axis=1) == np.arange(len(sims))))
    every_genuine.append(genuine)
    every_impostor.append(impostor)
    every_probe.append(probes)
  genuine, impostor = np.concatenate(every_genuine), np.concatenate(every_impostor)
  world_id["all"] = {"auc": roc_auc(genuine, impostor),
                     "tar_at_far_1pct": tar_at_far(genuine, impostor)}  # fmt: skip
  out = {"world_id": world_id, "calibration": {
    "probes": calibration(recognizer, identities, references, resolution, data_seed),
    "top1": top1}}  # fmt: skip
  if recognizer.spec.face_params:
    out["face_params"] = face_params_recovery(
      recognizer, identities * len(STYLES), np.concatenate(every_probe), data_seed
    )
  if not recognizer.spec.reads_prompt:
    return out
  rng = np.random.default_rng([data_seed, 0xA7])
  scenes = [sampling.random_scene(rng) for _ in range(prompt_images)]
  ids = sampling.held_out_identities(prompt_images, start=num_identities)
  images = np.stack([render(i, 1, s, resolution, data_seed) for i, s in zip(ids, scenes)])
  read = recognizer.read(images)
  truth = np.asarray([attribute_indices(s) for s in scenes])
  world_prompt = {name: float(np.mean(read[name] == truth[:, k]))
                  for k, name in enumerate(ATTRIBUTES)}  # fmt: skip
  return {**out, "world_prompt": world_prompt}
