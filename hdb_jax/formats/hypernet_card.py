"""The hypernetwork card, WORKDIR/hypernet.json: what a trained hypernetwork predicts for and how it
is built.

A Phase 1 WORKDIR (and an export of it) holds:
  hypernet.json   format, base model + fingerprint, adapted layers, LiDB config and aux-basis hash,
                  token and prompt, encoder and decoder sizes: all a predictor needs besides the
                  weights (written atomically when training starts; a workdir of another run is
                  refused)
  config.json     the full training config
Its weights are orbax checkpoints (train_checkpoint) or one safetensors file (hypernet_export).
"""

import dataclasses
import json
import os
from typing import Any

import ml_collections
import numpy as np

from hdb_jax.adapters import aux_basis_hash, check_aux_basis_hash
from hdb_jax.errors import MissingFileError, UserError
from hdb_jax.io.files import read_format_json, write_text_atomic

FORMAT_NAME = "hdb_jax.hypernet"
CARD = "hypernet.json"


class CheckpointMismatchError(UserError):
  """A checkpoint does not fit the base model or config it is used with."""


def card(config: ml_collections.ConfigDict, base: Any) -> dict[str, Any]:
  """What a checkpoint predicts for and how its network is built. base: a diffusion.base.BaseModel
  (not imported: reading a card, as `python -m hdb_jax.export` does, needs no diffusers)."""
  return {
    "format": FORMAT_NAME,
    "format_version": 1,
    "base_model": base.source,
    "base_fingerprint": base.sd.fingerprint(),
    "world_version": base.sd.world_version,  # None unless the base is a world model
    "layers": [[l.path, l.n, l.m] for l in base.layers],
    "lidb": dataclasses.asdict(base.lidb_config),
    "token": base.token,
    "prompt": config.prompt,
    "encoder": config.encoder.to_dict(),
    "model": config.model.to_dict(),
    "aux_hash": aux_basis_hash(base.layers, base.lidb_config),
    "aux_numpy": np.__version__,
  }


def write_card(workdir: str, config: ml_collections.ConfigDict, base: Any) -> None:
  """Writes hypernet.json and config.json; a workdir holding another run's card is refused."""
  path = os.path.join(workdir, CARD)
  new = card(config, base)
  if os.path.exists(path):
    saved = read_card(workdir)
    check_card(saved, new, workdir)
    check_aux_basis_hash(
      saved.get("aux_hash"), base.layers, base.lidb_config, workdir, saved.get("aux_numpy")
    )
  write_text_atomic(path, json.dumps(new, indent=1))
  write_text_atomic(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=1))


def read_card(workdir: str) -> dict[str, Any]:
  try:
    return read_format_json(
      os.path.join(workdir, CARD), FORMAT_NAME, "an hdb_jax hypernetwork card"
    )
  except FileNotFoundError as e:
    raise MissingFileError(
      f"{workdir} is not a hypernetwork checkpoint or export (no {CARD})"
    ) from e
  except ValueError as e:
    raise CheckpointMismatchError(str(e)) from e


def check_card(saved: dict[str, Any], expected: dict[str, Any], where: str) -> None:
  """Raises CheckpointMismatchError naming the first difference that matters."""
  saved_layers, layers = saved["layers"], expected["layers"]
  if saved_layers != layers:
    first = next(
      (i for i, (a, b) in enumerate(zip(saved_layers, layers)) if a != b),
      min(len(saved_layers), len(layers)),
    )
    detail = (
      f"layer {first}: checkpoint has "
      f"{saved_layers[first] if first < len(saved_layers) else 'none'}, "
      f"model has {layers[first] if first < len(layers) else 'none'}"
    )
    raise CheckpointMismatchError(
      f"{where} was trained for {len(saved_layers)} adapted layers of {saved['base_model']!r}; the "
      "base model "
      f"{expected['base_model']!r} with these targets has {len(layers)} ({detail}). Use the base "
      "model and "
      "--config.targets it was trained with."
    )
  for key in ("lidb", "base_fingerprint", "encoder", "model"):
    if key in expected and json.loads(json.dumps(saved.get(key))) != json.loads(
      json.dumps(expected[key])
    ):
      raise CheckpointMismatchError(
        f"{where} was made with a different {key!r}: {saved.get(key)} "
        f"(here: {expected[key]}); use a new --workdir or the original settings"
      )


def config_from_card(info: dict[str, Any]) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({"encoder": info["encoder"], "model": info["model"]})
