"""Training metrics to a JSONL file and, when TensorBoard is available, to event files (primary
process)."""

import json
import logging
import os
from typing import Any

import jax


class MetricsWriter:
  """write(step, {'name': float}) -> one JSON line in WORKDIR/metrics.jsonl (+ TensorBoard
  scalars)."""

  def __init__(self, workdir: str, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if self.enabled and tensorboard:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel

        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      except ImportError:
        logging.info(
          "TensorBoard event files need tensorboardX (pip install -e '.[data]'); metrics go to %s "
          "only",
          self.path,
        )

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for name, value in record.items():
        if name != "step":
          self._tb.add_scalar(name, value, step)
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str) -> list[dict[str, float]]:
  """One record per step, merged over its lines (train and eval; a resumed run's later lines
  win)."""
  path = os.path.join(workdir, "metrics.jsonl")
  by_step: dict[int, dict[str, float]] = {}
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      for line in f:
        if line.strip():
          record = json.loads(line)
          by_step.setdefault(int(record["step"]), {}).update(record)
  return [by_step[s] for s in sorted(by_step)]
