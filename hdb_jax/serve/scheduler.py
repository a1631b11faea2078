"""Collects requests that arrive close together into one batched run.

    scheduler = BatchScheduler(run_batch, window_s=0.5, max_batch=8)
    future = scheduler.submit(item)   # concurrent.futures.Future of run_batch's result for item
    scheduler.close()

A worker thread takes the first waiting request, waits up to `window_s` for more (at most
`max_batch`), and calls `run_batch(items)` once for all of them; each future gets its own result,
with the seconds it waited in the queue. An exception in a run fails that run's requests only; the
scheduler keeps serving.
"""

import concurrent.futures
import dataclasses
import logging
import queue
import threading
import time
from typing import Any, Callable, Sequence


@dataclasses.dataclass
class Queued:
  """A request waiting for a run: its item, its future and when it arrived."""

  item: Any
  future: concurrent.futures.Future
  arrived: float


class BatchScheduler:
  """run_batch(items) -> one result per item, in order; called from one worker thread."""

  def __init__(
    self,
    run_batch: Callable[[Sequence[Any]], Sequence[Any]],
    window_s: float = 0.5,
    max_batch: int = 8,
  ):
    if window_s < 0 or max_batch < 1:
      raise ValueError("window_s must be >= 0 and max_batch >= 1")
    self.run_batch, self.window_s, self.max_batch = run_batch, window_s, max_batch
    self._queue: queue.Queue[Queued | None] = queue.Queue()
    self._closed = False
    self._worker = threading.Thread(target=self._serve, name="batch-scheduler", daemon=True)
    self._worker.start()

  def submit(self, item: Any) -> concurrent.futures.Future:
    """Queues one request; its future resolves to (result, queue seconds)."""
    if self._closed:
      raise RuntimeError("the scheduler is closed")
    future: concurrent.futures.Future = concurrent.futures.Future()
    self._queue.put(Queued(item, future, time.perf_counter()))
    return future

  def close(self, timeout: float | None = None) -> None:
    """Stops taking requests; the worker finishes what is queued, then exits."""
    self._closed = True
    self._queue.put(None)
    self._worker.join(timeout)

  def _collect(self, first: Queued) -> tuple[list[Queued], bool]:
    """first plus whatever arrives within the window (up to max_batch); (batch, closing)."""
    batch, deadline = [first], time.perf_counter() + self.window_s
    while len(batch) < self.max_batch:
      try:
        nxt = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
      except queue.Empty:
        break
      if nxt is None:
        return batch, True
      batch.append(nxt)
    return batch, False

  def _serve(self) -> None:
    closing = False
    while not closing:
      first = self._queue.get()
      if first is None:
        break
      batch, closing = self._collect(first)
      started = time.perf_counter()
      try:
        results = self.run_batch([q.item for q in batch])
      except Exception as e:  # pylint: disable=broad-except
        logging.exception("a batch of %d requests failed", len(batch))
        for q in batch:
          q.future.set_exception(e)
        continue
      for q, result in zip(batch, results):
        q.future.set_result((result, started - q.arrived))
