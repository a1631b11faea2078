"""The warm Personalizer behind a BatchScheduler: requests that arrive together run as one batch.

service = PersonalizationService(Personalizer(config), window_s=0.5)
result = service.personalize(photo, prompts, progress)   # blocks; result.timings['queue_s']
"""

import concurrent.futures
import dataclasses
import logging
from typing import Any, Sequence

import numpy as np

from hdb_jax.serve.personalizer import Personalization, Personalizer, Progress
from hdb_jax.serve.scheduler import BatchScheduler


@dataclasses.dataclass
class Request:
  """One user's photo (float32 [R, R, 3] in [-1, 1]), prompts and progress callback."""

  photo: np.ndarray
  prompts: list[str]
  progress: Progress | None = None


class PersonalizationService:
  """Personalizes requests from many threads (a web server's), batching those within `window_s`."""

  def __init__(self, personalizer: Personalizer, window_s: float | None = None):
    self.personalizer = personalizer
    window = personalizer.config.window_s if window_s is None else window_s
    self.scheduler = BatchScheduler(self._run, window, personalizer.max_batch)

  def _run(self, requests: Sequence[Request]) -> list[Personalization]:
    others = f" (with {len(requests) - 1} other photos)" if len(requests) > 1 else ""

    def progress(stage: str, fraction: float) -> None:
      for request in requests:
        if request.progress is not None:
          try:
            request.progress(stage + others, fraction)
          except Exception:  # pylint: disable=broad-except
            logging.exception("a progress callback failed")

    return self.personalizer.personalize(
      [r.photo for r in requests], [r.prompts for r in requests], progress
    )

  def submit(
    self, photo: np.ndarray, prompts: Sequence[str], progress: Progress | None = None
  ) -> concurrent.futures.Future:
    """Queues one request (bad prompts are refused here, before they hold up a batch); the future
    gives (Personalization, seconds it waited for its run)."""
    self.personalizer.check_prompts(prompts)
    return self.scheduler.submit(Request(photo, list(prompts), progress))

  def personalize(
    self,
    photo: np.ndarray,
    prompts: Sequence[str],
    progress: Progress | None = None,
    timeout: float | None = None,
  ) -> Personalization:
    """Waits for the batch this request joins; its timings gain queue_s."""
    return with_queue_time(self.submit(photo, prompts, progress).result(timeout))

  def close(self) -> None:
    self.scheduler.close()

  def __enter__(self) -> "PersonalizationService":
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()


def with_queue_time(done: tuple[Personalization, float]) -> Personalization:
  """A submitted request's (result, queue seconds) -> the result, queue_s in its timings."""
  result, queue_s = done
  result.timings["queue_s"] = queue_s
  return result
