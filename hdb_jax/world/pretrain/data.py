"""World training batches: renders and their captions, a pure function of (data seed, step), drawn
ahead of the step that needs them on a background thread.

    batches = WorldBatches(tokenizer, resolution=64, global_batch=32, data_seed=0)
    batch = batches.get(step)   # image float32 [B, 64, 64, 3] in [-1, 1], input_ids int32 [B, T],
                                # identity int32 [B], face_params float32 [B, NUM_PARAMS],
                                # attributes int32 [B, 5]
"""

import concurrent.futures
from typing import Any

import numpy as np

from hdb_jax.models.tokenizer import pad_to_length
from hdb_jax.world.truth.faces import identity_params
from hdb_jax.world.truth.render import render
from hdb_jax.world.truth.sampling import TRAIN_IDENTITIES, paired_example, training_example
from hdb_jax.world.truth.scene import attribute_indices, caption


def world_batch(
  step: int,
  indices: range,
  resolution: int,
  data_seed: int,
  caption_dropout: float = 0.0,
  num_identities: int = TRAIN_IDENTITIES,
  pairs: bool = False,
  first_identity: int = 0,
) -> dict[str, Any]:
  """Examples `indices` of training step `step`: image uint8 [len, R, R, 3], caption (empty with
  probability caption_dropout, for classifier-free guidance), identity int32 [len] (ids from
  first_identity to first_identity + num_identities - 1), face_params float32 [len, NUM_PARAMS]
  (the identity's ground truth), attributes int32 [len, 5] (each attribute's value index,
  ATTRIBUTES order). pairs: examples 2k and 2k + 1 show one identity (sampling.paired_example)."""
  images, captions, identities, attributes = [], [], [], []
  example = paired_example if pairs else training_example
  for index in indices:
    identity, view, scene = example(data_seed, step, index, num_identities)
    identity += first_identity
    images.append(render(identity, view, scene, resolution, data_seed))
    drop = np.random.default_rng([data_seed, step, index, 0xCA97]).random() < caption_dropout
    captions.append("" if drop else caption(scene))
    identities.append(identity)
    attributes.append(attribute_indices(scene))
  return {
    "image": np.stack(images),
    "caption": captions,
    "identity": np.asarray(identities, np.int32),
    "face_params": np.stack([identity_params(data_seed, i) for i in identities]),
    "attributes": np.asarray(attributes, np.int32),
  }


class WorldBatches:
  """This process's share of each global batch, the next one rendered while a step runs (captions
  tokenized as input_ids when a tokenizer is given); step_offset shifts the data a run sees (a
  continued run goes on where its starting model's training stopped)."""

  def __init__(
    self,
    tokenizer: Any,
    resolution: int,
    global_batch: int,
    data_seed: int,
    caption_dropout: float = 0.0,
    process_index: int = 0,
    process_count: int = 1,
    num_identities: int = TRAIN_IDENTITIES,
    pairs: bool = False,
    step_offset: int = 0,
    first_identity: int = 0,
  ):
    self.tokenizer, self.resolution = tokenizer, resolution
    self.data_seed, self.caption_dropout = data_seed, caption_dropout
    self.num_identities, self.pairs, self.first_identity = num_identities, pairs, first_identity
    self.step_offset = step_offset  # get(step) draws the data of step + step_offset
    local = global_batch // process_count
    self.indices = range(process_index * local, (process_index + 1) * local)
    self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="world-data")
    self._ahead: dict[int, concurrent.futures.Future] = {}

  def _make(self, step: int) -> dict[str, np.ndarray]:
    batch = world_batch(step + self.step_offset, self.indices, self.resolution, self.data_seed,
                        self.caption_dropout, self.num_identities, self.pairs,
                        self.first_identity)  # fmt: skip
    captions = batch.pop("caption")
    batch["image"] = batch["image"].astype(np.float32) / 127.5 - 1.0
    if self.tokenizer is not None:
      batch["input_ids"] = pad_to_length(self.tokenizer, captions).input_ids.astype(np.int32)
    return batch

  def get(self, step: int) -> dict[str, np.ndarray]:
    """The batch of `step`; starts drawing that of step + 1."""
    future = self._ahead.pop(step, None)
    batch = future.result() if future is not None else self._make(step)
    self._ahead = {step + 1: self._pool.submit(self._make, step + 1)}
    return batch

  def close(self) -> None:
    self._pool.shutdown(wait=False, cancel_futures=True)
