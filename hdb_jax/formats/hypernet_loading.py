"""A predictor from a trained hypernetwork directory: a Phase 1 WORKDIR (orbax checkpoints), an
export, or 'world' (the shipped world hypernetwork's export, hdb_jax/assets/world-hypernet; an
installation without it gets an error that says how to train one).

    predictor = load_predictor("/ckpt/hyper", base)   # images [B, H, W, 3] -> LiDB params [B, ...]
    predictor = load_predictor("world", base)         # the shipped world hypernetwork, if any

The directory's card (hypernet_card) must match the base model's adapted layers, LiDB layout and
aux bases; anything else is refused with a message naming the first difference.
"""

import dataclasses
import os

from hdb_jax.adapters import check_aux_basis_hash
from hdb_jax.diffusion.base import BaseModel
from hdb_jax.errors import MissingFileError
from hdb_jax.formats.hypernet_card import check_card, config_from_card, read_card
from hdb_jax.formats.hypernet_export import is_exported, load_exported
from hdb_jax.formats.train_checkpoint import latest_params
from hdb_jax.hypernet.network import build_hypernet
from hdb_jax.hypernet.predictor import HypernetPredictor

WORLD = "world"
# The shipped world hypernetwork (an export, beside the world model it was trained for).
WORLD_HYPERNET_DIR = os.path.join(
  os.path.dirname(os.path.dirname(__file__)), "assets", "world-hypernet"
)


def resolve_hypernet(path: str) -> str:
  """The directory a --config.hypernet names: 'world' (shipped) or the path itself."""
  if path != WORLD:
    return path
  if not is_exported(WORLD_HYPERNET_DIR):
    raise MissingFileError(
      f"the world hypernetwork is not in this installation ({WORLD_HYPERNET_DIR}); train one with "
      "`python -m hdb_jax.train --config=configs/hyper.py:world --workdir=DIR` and pass "
      "--config.hypernet=DIR"
    )
  return WORLD_HYPERNET_DIR


def load_predictor(
  path: str, base: BaseModel, refine_steps: int | None = None
) -> HypernetPredictor:
  """A predictor for `base` from a training WORKDIR (its newest checkpoint) or an exported
  hypernetwork directory (hdb_jax.export --hypernet), refused if it was trained for other layers.

  refine_steps overrides the trained number of refinement iterations (e.g. 1 for the k=1 ablation).
  path 'world' is the shipped world hypernetwork.
  """
  path = resolve_hypernet(path)
  if not os.path.isdir(path):
    raise MissingFileError(f"hypernetwork checkpoint not found: {path}")
  info = read_card(path)
  layers = [[l.path, l.n, l.m] for l in base.layers]
  check_card(
    info,
    {
      "layers": layers,
      "base_model": base.source,
      "lidb": dataclasses.asdict(base.lidb_config),
      "base_fingerprint": base.sd.fingerprint(),
    },  # fmt: skip
    path,
  )
  check_aux_basis_hash(
    info.get("aux_hash"),
    base.layers,
    base.lidb_config,
    f"hypernetwork {path}",
    info.get("aux_numpy"),
  )
  net = build_hypernet(config_from_card(info), base)
  step, params = load_exported(path) if is_exported(path) else latest_params(path)
  return HypernetPredictor(net=net, params=params, step=step, refine_steps=refine_steps)
