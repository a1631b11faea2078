"""Are Phase 0's weights good targets for the hypernetwork? Two measurements on the world.

  python benchmarks/world_targets.py --weights=WORKDIR/phase0/weights [--identities=8]

1. Identity in the targets: images drawn with Phase 0's own LiDB weights (the hypernetwork's
   targets) vs the base model, for `--identities` Phase 0 identities x the world prompts x 1 sample,
   World-ID to each identity's photo (its default-scene render, what Phase 0 trained on) and
   World-prompt. The gap is the most a perfect weight-space prediction could give.
2. Predictability of the targets from identity: ridge regression from the world recognizer's
   identity embedding of each photo to its packed LiDB vector, fitted on all but `--probe_held_out`
   identities; the held-out weight loss (||prediction - target||^2, Phase 1's weight term) against
   predicting the training mean. If a linear map from an identity embedding removes little of it,
   the targets' variation across identities is mostly not identity (e.g. the optimizer's path
   through a non-unique factorization), and the weight-space loss can teach a hypernetwork little
   more than the mean.
"""

import os
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
from hdb_jax.config import phases
from hdb_jax.diffusion.base import setup_base_model
from hdb_jax.diffusion.sampling import make_sampler
from hdb_jax.evaluate.loop import (
  NoIdentity,
  Scorer,
  evaluation_sampling,
  sample_prompts,
  world_recognizer,
)
from hdb_jax.evaluate.prompts import resolve_prompts
from hdb_jax.formats import identity as identity_lib
from hdb_jax.formats.weights_dataset import open_dataset
from hdb_jax.world.truth.render import render
from hdb_jax.world.truth.source import identity_number

flags.DEFINE_string("weights", None, "A Phase 0 weights directory on the world model.")
flags.DEFINE_integer("identities", 8, "Phase 0 identities drawn with their weights.", lower_bound=1)
flags.DEFINE_integer("probe_held_out", 64, "Identities held out of the ridge fit.", lower_bound=1)
flags.DEFINE_list("ridge", ["0.1", "1", "10", "100"], "Ridge penalties tried.")
flags.mark_flag_as_required("weights")
FLAGS = flags.FLAGS


def identity_photos(ids: list[str], resolution: int) -> np.ndarray:
  """uint8 [N, resolution, resolution, 3]: each Phase 0 identity's photo (default scene, view 0),
  what Phase 0 trained on."""
  return np.stack([render(identity_number(i), 0, None, resolution) for i in ids])


def world_id_of_targets(dataset, ids: list[str]) -> dict[str, np.ndarray]:
  """{'base', 'phase0'} -> [identities, 2]: World-ID and World-prompt means per identity."""
  config = phases.evaluate_config("world")
  config.num_samples = 1
  base = setup_base_model(config)
  prompts = resolve_prompts("world")
  photos = identity_photos(ids, base.sd.resolution)
  scorer = Scorer(config, photos, prompts, None, world_recognizer("world", prompts))
  sampler = make_sampler(base.sd, evaluation_sampling(config))
  rows: dict[str, list] = {"base": [], "phase0": []}
  for k, identity_id in enumerate(ids):
    target = identity_lib.from_arrays(base.layers, base.source, base.sd.fingerprint(),
                                      base.lidb_config, lidb=dataset.lidb_params(identity_id),
                                      token=base.token)  # fmt: skip
    for name, ident in (("base", NoIdentity(base.token)), ("phase0", target)):
      # noise drawn per identity, the same for both rows (as the evaluation draws it)
      images = sample_prompts(base, config, sampler, ident, prompts, k * config.num_samples)
      scores = scorer.score(k, images)
      rows[name].append([scores["world_id"].mean(), scores["world_prompt"].mean()])
  return {name: np.asarray(r) for name, r in rows.items()}


def ridge_probe(dataset) -> list[tuple[str, float, float]]:
  """[(predictor, held-out weight loss, training weight loss)] for the mean and each ridge
  penalty."""
  ids, targets = dataset.vectors()
  recognizer = world_recognizer("world", ["a {token} face"])
  photos = identity_photos(ids, 64)
  features = recognizer.embed(photos)
  if not 0 < FLAGS.probe_held_out < len(ids):
    raise app.UsageError(f"--probe_held_out must be between 1 and {len(ids) - 1}")
  order = np.random.default_rng(0).permutation(len(ids))
  test, train = order[: FLAGS.probe_held_out], order[FLAGS.probe_held_out :]

  def loss(prediction, rows):
    return float(((targets[rows] - prediction) ** 2).sum(axis=1).mean())

  mean, feature_mean = targets[train].mean(axis=0), features[train].mean(axis=0)
  centred = features - feature_mean  # the intercept (the training mean) is not penalized
  rows = [("training mean", loss(mean, test), loss(mean, train))]
  for penalty in FLAGS.ridge:
    gram = centred[train].T @ centred[train] + float(penalty) * np.eye(features.shape[1])
    weights = np.linalg.solve(gram, centred[train].T @ (targets[train] - mean))
    rows.append(
      (
        f"ridge from the recognizer's embedding, penalty {penalty}",
        loss(mean + centred[test] @ weights, test),
        loss(mean + centred[train] @ weights, train),
      )
    )
  return rows


def main(argv):
  del argv
  dataset = open_dataset(FLAGS.weights)
  all_ids = dataset.identity_ids()
  ids = all_ids[:: max(1, len(all_ids) // FLAGS.identities)][: FLAGS.identities]
  scores = world_id_of_targets(dataset, ids)
  gain = scores["phase0"][:, 0] - scores["base"][:, 0]
  prompts = len(resolve_prompts("world"))
  print(f"1. {len(ids)} Phase 0 identities x {prompts} world prompts, 1 sample; mean +- std. error")
  print("| weights | World-ID | World-prompt |\n|---|---|---|")
  for name, label in (("base", "base model (none)"), ("phase0", "Phase 0's own (the targets)")):
    values = scores[name]
    error = values[:, 0].std(ddof=1) / np.sqrt(len(values))
    print(f"| {label} | {values[:, 0].mean():.3f} +- {error:.3f} | {values[:, 1].mean():.3f} |")
  print(f"paired World-ID gain: {gain.mean():.3f} +- {gain.std(ddof=1) / np.sqrt(len(gain)):.3f}")
  print(f"\n2. Ridge probe: {len(all_ids)} targets of {dataset.vectors()[1].shape[1]:,} numbers, "
        f"{FLAGS.probe_held_out} held out; weight loss ||prediction - target||^2")  # fmt: skip
  print("| predictor | held-out | training |\n|---|---|---|")
  for name, held_out, training in ridge_probe(dataset):
    print(f"| {name} | {held_out:.1f} | {training:.1f} |")


if __name__ == "__main__":
  app.run(main)
