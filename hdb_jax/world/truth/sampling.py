"""Which world images training sees: identities split by id, scenes drawn at random, captions.

    identity, view, scene = training_example(seed=0, step=12, index=3)
    held_out_identities(4)   # [1000000, 1000001, 1000002, 1000003]: never trained on

Every example is a pure function of (seed, step, index), so a resumed run sees the same data.
"""

import numpy as np

from hdb_jax.world.truth.scene import ATTRIBUTES, Scene

# The world model and the recognizer train on identity ids [0, TRAIN_IDENTITIES); held-out
# identities (evaluation, personalization tests) are ids from HELD_OUT_START on.
TRAIN_IDENTITIES = 100_000
HELD_OUT_START = 1_000_000
# The judge trains on ids [JUDGE_FIRST_IDENTITY, + JUDGE_IDENTITIES): disjoint from every other
# network's, and from the held-out ids.
JUDGE_FIRST_IDENTITY = 200_000
JUDGE_IDENTITIES = 100_000
VIEWS = 1 << 20
# How often each attribute keeps its default value (else a uniform other value): a caption says
# 2.3 things on average, and 2.4% of captions are the bare 'a face'.
DEFAULT_PROBABILITY = {
  "headwear": 0.5,
  "glasses": 0.6,
  "expression": 0.5,
  "background": 0.4,
  "style": 0.4,
}


def random_scene(rng: np.random.Generator) -> Scene:
  values = {}
  for name, options in ATTRIBUTES.items():
    keep = rng.random() < DEFAULT_PROBABILITY[name]
    values[name] = options[0] if keep else options[1 + rng.integers(len(options) - 1)]
  return Scene(**values)


def training_example(
  seed: int, step: int, index: int, num_identities: int = TRAIN_IDENTITIES
) -> tuple[int, int, Scene]:
  """(identity id, view id, scene) of example `index` of training step `step`."""
  rng = np.random.default_rng([int(seed), int(step), int(index), 0x5EED])
  return int(rng.integers(num_identities)), int(rng.integers(VIEWS)), random_scene(rng)


def paired_example(
  seed: int, step: int, index: int, num_identities: int = TRAIN_IDENTITIES
) -> tuple[int, int, Scene]:
  """Like training_example, but examples 2k and 2k + 1 of a step show the same identity (in their
  own views and scenes): the positive pairs of a contrastive identity loss."""
  identity = np.random.default_rng([int(seed), int(step), int(index) // 2, 0x1D]).integers(
    num_identities
  )
  _, view, scene = training_example(seed, step, index, num_identities)
  return int(identity), view, scene


# Held-out ids from HELD_OUT_START + VALIDATION_OFFSET on are the validation split: what tuning
# (the fast finetune's learning rate, steps, rank) may look at; the test split starts at 0.
VALIDATION_OFFSET = 500_000


def held_out_identities(count: int, start: int = 0) -> list[int]:
  """`count` identity ids that no world model or recognizer trains on."""
  return list(range(HELD_OUT_START + start, HELD_OUT_START + start + count))


def split_identities(split: str, count: int) -> list[int]:
  """`count` held-out ids of 'test' (reported) or 'validation' (tuned on): disjoint."""
  if split not in ("test", "validation"):
    raise ValueError(f"split must be 'test' or 'validation', not {split!r}")
  if count > VALIDATION_OFFSET:
    raise ValueError(f"at most {VALIDATION_OFFSET:,} identities per split")
  return held_out_identities(count, VALIDATION_OFFSET if split == "validation" else 0)
