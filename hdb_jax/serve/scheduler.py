"""Collects requests that arrive close together into one batched run.

    scheduler = BatchScheduler(run_batch, window_s=0.5, max_batch=8)
    future = scheduler.submit(item)   # concurrent.futures.Future of run_batch's result for item
    scheduler.close()

A worker thread takes the first waiting request, waits up to `window_s` for more (at most
`max_batch`), and calls `run_batch(items)` once for all of them; each future gets its own result,
with the seconds it waited in the queue. If a run of several requests fails, each is rerun alone,
so a failure fails only the request that causes it; the scheduler keeps serving.
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
    self._lock = threading.Lock()
    self._worker = threading.Thread(target=self._serve, name="batch-scheduler", daemon=True)
    self._worker.start()

  def submit(self, item: Any) -> concurrent.futures.Future:
    """Queues one request; its future resolves to (result, queue seconds)."""
    future: concurrent.futures.Future = concurrent.futures.Future()
    with self._lock:  # nothing lands behind the stop marker
      if self._closed:
        raise RuntimeError("the scheduler is closed")
      self._queue.put(Queued(item, future, time.perf_counter()))
    return future

  def close(self, timeout: float | None = None) -> None:
    """Stops taking requests; the worker finishes the run in progress, and what is still queued
    fails with RuntimeError('closed')."""
    with self._lock:
      if self._closed:
        return
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

  def _run(self, batch: list[Queued]) -> None:
    """Runs the batch's live requests (cancelled ones are dropped) and resolves every future. If a
    batch of several fails, each request is rerun alone, so one bad request fails only itself."""
    live = [q for q in batch if q.future.set_running_or_notify_cancel()]
    if not live:
      return
    started = time.perf_counter()
    try:
      results = list(self.run_batch([q.item for q in live]))
      if len(results) != len(live):
        raise RuntimeError(f"run_batch gave {len(results)} results for {len(live)} requests")
    except Exception as e:  # pylint: disable=broad-except
      if len(live) == 1:
        logging.exception("a request failed")
        live[0].future.set_exception(e)
        return
      logging.warning("a batch of %d failed (%s); running each alone", len(live), e)
      for q in live:
        self._run_alone(q, started)
      return
    for q, result in zip(live, results):
      q.future.set_result((result, started - q.arrived))

  def _run_alone(self, q: Queued, started: float) -> None:
    try:
      (result,) = self.run_batch([q.item])
    except Exception as e:  # pylint: disable=broad-except
      logging.exception("a request failed")
      q.future.set_exception(e)
    else:
      q.future.set_result((result, started - q.arrived))

  def _serve(self) -> None:
    closing = False
    while not (closing or self._closed):
      first = self._queue.get()
      if first is None or self._closed:
        if first is not None and first.future.set_running_or_notify_cancel():
          first.future.set_exception(RuntimeError("closed"))
        break
      batch, closing = self._collect(first)
      try:
        self._run(batch)
      except BaseException as e:  # pylint: disable=broad-except
        # never leave a future waiting, whatever escaped (the worker goes on)
        logging.exception("the scheduler's run failed")
        for q in batch:
          if not q.future.done():
            q.future.set_exception(e)
    # closed: fail what is still queued
    while True:
      try:
        left = self._queue.get_nowait()
      except queue.Empty:
        return
      if left is not None and left.future.set_running_or_notify_cancel():
        left.future.set_exception(RuntimeError("closed"))
