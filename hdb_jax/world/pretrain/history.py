"""The runs that made a world model, as its card records them (a continued run's card lists the
runs before it), without importing torch.

    runs = earlier_training(model_dir)   # [{'command', 'config', 'stages', 'hardware'}, ...]
    unet_steps(runs)                     # UNet steps over them
"""

import json
import os
from typing import Any

from hdb_jax.models.loading import WORLD_CARD
from hdb_jax.world.truth import check_version

CARD = WORLD_CARD  # the card models.loading reads a world model's version from


def earlier_training(model_dir: str) -> list[dict[str, Any]]:
  """The runs that made the model in model_dir, oldest first (command, config, per-stage records,
  hardware); [] for a model without a card (random weights, or made elsewhere). A model of another
  world version is refused (WorldVersionError)."""
  path = os.path.join(model_dir, CARD)
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    card = json.load(f)
  check_version(card, model_dir)
  run = {key: card[key] for key in ("command", "config", "stages", "hardware") if key in card}
  return card.get("earlier", []) + [run]


def unet_steps(runs: list[dict[str, Any]]) -> int:
  """UNet steps over the runs of earlier_training (or of a card's earlier runs and itself)."""
  return sum(int(run["stages"].get("unet", {}).get("steps", 0)) for run in runs)
