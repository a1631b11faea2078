"""Batches from any image source: sharded per process, shuffled per epoch, restartable from a
position.

    it = make_iterator(config.data, batch_size=8, resolution=512, process_index=jax.process_index(),
                       process_count=jax.process_count(), seed=config.seed)
    batch = next(it)
    # {'image': f32 [8, 512, 512, 3] in [-1, 1], 'identity_id': str [8], 'index': i64 [8]}
    saved = it.position                 # {'epoch': e, 'offset': k}: save it with the checkpoint
    make_iterator(..., start_position=saved)  # yields exactly the batch `it` yields next

The stream of one process is endless: epoch after epoch of its shard (see `ImageSource.epoch`).
Images are decoded by `num_workers` threads, a few batches ahead. A bad file (corrupt, truncated,
empty, not an image, too small) is skipped: logged once by name, counted in `.skipped`, remembered
so later epochs pass over it, and summarised at the end of each epoch that found new ones and on
`close()`. A whole epoch without one usable image is a SourceError. Positions count bad and filtered
examples too, so they are exact: the same position always gives the same next batch, given the same
source, seed, process_count and shuffle settings. Each process has its own position: save all of
them (e.g. one per process index) in a multi-host checkpoint.
"""

import collections
import concurrent.futures
import dataclasses
from typing import Any, Mapping

import numpy as np
from absl import logging

from hdb_jax.data import augment as augment_lib
from hdb_jax.data.paired import paired_source, stack_weights
from hdb_jax.data.sources import Example, ImageSource, SourceError, make_source
from hdb_jax.errors import ConfigError
from hdb_jax.io.images import ImageError

Position = dict[str, int]  # {'epoch': e, 'offset': k}: the k-th example of epoch e's shard is next


@dataclasses.dataclass
class _Item:
  epoch: int
  offset: int  # -1 for the end-of-epoch marker
  example: Example | None = None
  future: concurrent.futures.Future | None = None
  full_epoch: bool = False  # (marker only) the epoch was read from its start


class DataIterator:
  """Endless iterator of batches of one process's shard; `.position` restarts it exactly."""

  def __init__(
    self,
    source: ImageSource,
    *,
    batch_size: int,
    resolution: int,
    process_index: int,
    process_count: int,
    seed: int,
    start_position: Position | int,
    shuffle: bool,
    augment: bool,
    color_jitter: float,
    flip: bool,
    num_workers: int,
    weights: Mapping[str, Any] | None,
  ):
    """Built by make_iterator from a data config (hdb_jax.config.pieces.data_config's defaults)."""
    if batch_size < 1 or resolution < 1:
      raise ValueError(
        f"batch_size and resolution must be positive, got {batch_size} and {resolution}"
      )
    if not 0 <= process_index < process_count:
      raise ValueError(
        f"process_index={process_index} is not in [0, process_count={process_count})"
      )
    self.source, self.batch_size, self.resolution = source, batch_size, resolution
    self.process_index, self.process_count, self.seed = process_index, process_count, seed
    if augment and flip and weights is not None:
      raise ConfigError(
        "data.flip=True with Phase 0 weights: a mirrored face would be paired with LiDB weights "
        "fitted to "
        "the unmirrored photo (faces are not symmetric: parting, moles, lighting), teaching the "
        "hypernetwork "
        "to predict weights that draw the mirror image wrong. Leave data.flip off for Phase 1."
      )
    self.shuffle, self.augment, self.color_jitter, self.weights = (
      shuffle,
      augment,
      color_jitter,
      weights,
    )
    self.flip = flip
    self._shard_size = source.shard_size(process_index, process_count)
    if self._shard_size == 0:
      raise SourceError(
        f"{source.name}: empty for process {process_index} of {process_count} "
        f"({len(source)} examples in all)"
      )
    self._position = normalize_position(start_position, self._shard_size)
    self._pool = (
      concurrent.futures.ThreadPoolExecutor(num_workers, "hdb_data") if num_workers > 0 else None
    )
    self._lookahead = max(2 * batch_size, 4 * num_workers)
    self._pending: collections.deque[_Item] = collections.deque()
    self._items = self._produce(self._position["epoch"], self._position["offset"])
    self._bad: dict[str, str] = {}  # name -> reason, in the order found
    self._bad_summarised = 0
    self._good_this_epoch = 0

  @property
  def position(self) -> Position:
    """Where the next batch starts; pass it back as `start_position` to resume with that batch."""
    return dict(self._position)

  @property
  def skipped(self) -> int:
    """Distinct bad files found so far."""
    return len(self._bad)

  @property
  def skipped_files(self) -> dict[str, str]:
    """name -> why it was skipped."""
    return dict(self._bad)

  def __iter__(self) -> "DataIterator":
    return self

  def __next__(self) -> dict[str, Any]:
    images, identity_ids, indices = [], [], []
    while len(images) < self.batch_size:
      item = self._next_item()
      if item.offset < 0:
        self._end_epoch(item)
        continue
      self._position = {"epoch": item.epoch, "offset": item.offset + 1}
      if item.future is None:
        continue  # filtered out, or a file already known to be bad
      try:
        image = item.future.result()
      except ImageError as e:
        self._skip(item.example, str(e))
        continue
      self._good_this_epoch += 1
      images.append(image)
      identity_ids.append(item.example.identity_id)
      indices.append(item.example.index)
    batch = {
      "image": np.stack(images),
      "identity_id": np.asarray(identity_ids),
      "index": np.asarray(indices, np.int64),
    }
    if self.weights is not None:
      batch["weights"] = stack_weights(self.weights, identity_ids)
    return batch

  def close(self) -> None:
    """Stops the workers and logs the summary of skipped files."""
    self.log_summary(force=True)
    for item in self._pending:
      if item.future is not None:
        item.future.cancel()
    self._pending.clear()
    if self._pool is not None:
      self._pool.shutdown(wait=True, cancel_futures=True)
      self._pool = None

  def __enter__(self) -> "DataIterator":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def log_summary(self, force: bool = False) -> None:
    if self._bad and (force or len(self._bad) > self._bad_summarised):
      names = ", ".join(list(self._bad)[:20]) + (", ..." if len(self._bad) > 20 else "")
      logging.warning(
        "%s: %d bad file(s) skipped so far (process %d of %d): %s",
        self.source.name,
        len(self._bad),
        self.process_index,
        self.process_count,
        names,
      )
      self._bad_summarised = len(self._bad)

  def _produce(self, epoch: int, offset: int):
    """Items in stream order, loads submitted to the workers as they are produced."""
    while True:
      stream = self.source.epoch(
        epoch,
        process_index=self.process_index,
        process_count=self.process_count,
        seed=self.seed,
        shuffle=self.shuffle,
        start=offset,
      )
      for k, example in enumerate(stream, start=offset):
        future = None
        if example is not None and example.name not in self._bad:
          future = self._submit(epoch, example)
        yield _Item(epoch, k, example, future)
      yield _Item(epoch, -1, full_epoch=offset == 0)
      epoch, offset = epoch + 1, 0

  def _submit(self, epoch: int, example: Example) -> concurrent.futures.Future:
    if self._pool is not None:
      return self._pool.submit(self._load, epoch, example)
    future: concurrent.futures.Future = concurrent.futures.Future()
    try:
      future.set_result(self._load(epoch, example))
    except ImageError as e:
      future.set_exception(e)
    return future

  def _load(self, epoch: int, example: Example) -> np.ndarray:
    image = example.load(self.resolution)
    if self.augment:
      image = augment_lib.augment_image(
        image,
        augment_lib.example_rng(self.seed, epoch, example.index),
        flip=self.flip,
        color_jitter=self.color_jitter,
      )
    return image

  def _next_item(self) -> _Item:
    while len(self._pending) < self._lookahead:
      self._pending.append(next(self._items))
    return self._pending.popleft()

  def _skip(self, example: Example, reason: str) -> None:
    if example.name not in self._bad:
      logging.warning("skipping bad file: %s", reason)
      self._bad[example.name] = reason

  def _end_epoch(self, marker: _Item) -> None:
    self._position = {"epoch": marker.epoch + 1, "offset": 0}
    if marker.full_epoch and self._good_this_epoch == 0:
      raise SourceError(
        f"{self.source.name}: no usable image in a whole epoch of process {self.process_index}'s "
        f"shard ({self._shard_size} examples, {len(self._bad)} bad files skipped, e.g. "
        f"{next(iter(self._bad.values()), 'none')})"
      )
    self._good_this_epoch = 0
    self.log_summary()


def normalize_position(position: Position | int, shard_size: int) -> Position:
  """An int (examples into the stream) or {'epoch', 'offset'} -> {'epoch', 'offset'} with offset <
  shard_size."""
  if isinstance(position, Mapping):
    epoch, offset = int(position["epoch"]), int(position["offset"])
  else:
    epoch, offset = 0, int(position)
  if epoch < 0 or offset < 0:
    raise ValueError(f"invalid data position {position!r}")
  epoch, offset = epoch + offset // shard_size, offset % shard_size
  return {"epoch": epoch, "offset": offset}


def make_iterator(
  data_config: Any,
  batch_size: int,
  resolution: int,
  *,
  process_index: int,
  process_count: int,
  seed: int,
  start_position: Position | int = 0,
  source: ImageSource | None = None,
  weights: Mapping[str, Any] | None = None,
) -> DataIterator:
  """Batches of `data_config`'s source (or `source`) for this process.

  Batches: {'image': float32 [B, resolution, resolution, 3] in [-1, 1], 'identity_id': str [B],
  'index': int64 [B]} and, with `weights` (identity_id -> weights pytree), 'weights' (each leaf [B,
  ...]), the source then restricted to identities with weights. Use as a context manager, or call
  close().
  """
  source = source if source is not None else make_source(data_config)
  if weights is not None:
    source = paired_source(weights, source)
  return DataIterator(
    source,
    batch_size=batch_size,
    resolution=resolution,
    process_index=process_index,
    process_count=process_count,
    seed=seed,
    start_position=start_position,
    shuffle=bool(data_config.shuffle),
    augment=bool(data_config.augment),
    color_jitter=float(data_config.color_jitter),
    flip=bool(data_config.flip),
    num_workers=int(data_config.num_workers),
    weights=weights,
  )
