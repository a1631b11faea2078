"""What a run logs at start (as big_vision and lm1b do): the resolved config and a parameter
table."""

import logging
import os
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np


def log_config(config: ml_collections.ConfigDict) -> None:
  """Logs the resolved config (after --config.key=value overrides), one field per line."""
  logging.info("config:\n%s", config)


def parameter_count(tree: Any) -> int:
  return int(sum(np.prod(np.shape(leaf)) for leaf in jax.tree.leaves(tree)))


def log_parameters(groups: Mapping[str, Any]) -> str:
  """Logs (and returns) a table of parameter counts: each group's top-level entries and their
  total."""
  rows = []
  for group, tree in groups.items():
    if isinstance(tree, Mapping) and len(tree) > 1:
      rows += [(f"{group}/{name}", parameter_count(sub)) for name, sub in sorted(tree.items())]
    rows.append((group, parameter_count(tree)))
  width = max(len(name) for name, _ in rows)
  table = "\n".join(f"  {name:<{width}}  {count:>14,}" for name, count in rows)
  logging.info("parameters:\n%s", table)
  return table


def hardware() -> str:
  """What this process computes on, e.g. '1 cpu device, 2 CPU cores' (for wall times to mean
  something)."""
  devices = jax.devices()
  kind = devices[0].device_kind if devices[0].platform != "cpu" else "cpu"
  plural = "s" if len(devices) > 1 else ""
  return f"{len(devices)} {kind} device{plural}, {os.cpu_count()} CPU cores"
