"""Hypernetwork checkpoints: the orbax training state, and the card that says what it predicts for.

WORKDIR/
  hypernet.json      format, base model + fingerprint, adapted layers, LiDB config and aux-basis hash,
                     encoder, decoder sizes: all a predictor needs besides the weights (written once, atomically)
  config.json        the full training config
  checkpoints/<step>/{state,meta}   orbax: params, optimizer, step; data positions of every process

`load_predictor(WORKDIR, base)` refuses a checkpoint trained for other layers or another LiDB layout.
"""

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from hdb_jax.adapters import LidbParams, aux_basis_hash, check_aux_basis_hash
from hdb_jax.base_model import BaseModel
from hdb_jax.errors import MissingFileError, UserError
from hdb_jax.fileio import read_format_json, write_text_atomic
from hdb_jax.hypernet.network import Hypernet, build_hypernet

FORMAT_NAME = "hdb_jax.hypernet"
CARD = "hypernet.json"
CHECKPOINTS = "checkpoints"


class CheckpointMismatchError(UserError):
  """A checkpoint does not fit the base model or config it is used with."""


def card(config: ml_collections.ConfigDict, base: BaseModel) -> dict[str, Any]:
  """What a checkpoint predicts for and how its network is built."""
  return {"format": FORMAT_NAME, "format_version": 1, "base_model": base.source,
          "base_fingerprint": base.sd.fingerprint(), "layers": [[l.path, l.n, l.m] for l in base.layers],
          "lidb": dataclasses.asdict(base.lidb_config), "token": base.token, "prompt": config.prompt,
          "encoder": config.encoder.to_dict(), "model": config.model.to_dict(),
          "aux_hash": aux_basis_hash(base.layers, base.lidb_config), "aux_numpy": np.__version__}


def write_card(workdir: str, config: ml_collections.ConfigDict, base: BaseModel) -> None:
  """Writes hypernet.json and config.json; a workdir holding another run's card is refused."""
  path = os.path.join(workdir, CARD)
  new = card(config, base)
  if os.path.exists(path):
    saved = read_card(workdir)
    check_card(saved, new, workdir)
    check_aux_basis_hash(saved.get("aux_hash"), base.layers, base.lidb_config, workdir, saved.get("aux_numpy"))
  write_text_atomic(path, json.dumps(new, indent=1))
  write_text_atomic(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=1))


def read_card(workdir: str) -> dict[str, Any]:
  try:
    return read_format_json(os.path.join(workdir, CARD), FORMAT_NAME, "an hdb_jax hypernetwork card")
  except FileNotFoundError as e:
    raise MissingFileError(f"{workdir} is not a hypernetwork checkpoint or export (no {CARD})") from e
  except ValueError as e:
    raise CheckpointMismatchError(str(e)) from e


def check_card(saved: dict[str, Any], expected: dict[str, Any], where: str) -> None:
  """Raises CheckpointMismatchError naming the first difference that matters."""
  saved_layers, layers = saved["layers"], expected["layers"]
  if saved_layers != layers:
    first = next((i for i, (a, b) in enumerate(zip(saved_layers, layers)) if a != b), min(len(saved_layers),
                                                                                          len(layers)))
    detail = (f"layer {first}: checkpoint has {saved_layers[first] if first < len(saved_layers) else 'none'}, "
              f"model has {layers[first] if first < len(layers) else 'none'}")
    raise CheckpointMismatchError(
        f"{where} was trained for {len(saved_layers)} adapted layers of {saved['base_model']!r}; the base model "
        f"{expected['base_model']!r} with these targets has {len(layers)} ({detail}). Use the base model and "
        "--config.targets it was trained with.")
  for key in ("lidb", "base_fingerprint", "encoder", "model"):
    if key in expected and json.loads(json.dumps(saved.get(key))) != json.loads(json.dumps(expected[key])):
      raise CheckpointMismatchError(f"{where} was made with a different {key!r}: {saved.get(key)} "
                                    f"(here: {expected[key]}); use a new --workdir or the original settings")


def manager(workdir: str, keep: int = 3, use_async: bool = True) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=use_async, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), CHECKPOINTS), options=options,
                               item_names=("state", "meta"))


def save(mngr: ocp.CheckpointManager, step: int, state: Any, meta: dict[str, Any]) -> None:
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
  """The state (placed like `abstract_state`, ShapeDtypeStructs with shardings) and meta of `step`."""
  restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                         meta=ocp.args.JsonRestore()))
  return restored.state, restored.meta


def latest_params(workdir: str) -> tuple[int, Any]:
  """(step, trainable params) of the newest checkpoint in WORKDIR, on this process's first device.

  Works whatever mesh or number of processes saved it (the shapes come from the checkpoint's metadata).
  """
  handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
  mngr = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), CHECKPOINTS), item_names=("state", "meta"),
                               item_handlers=handlers)
  step = mngr.latest_step()
  if step is None:
    raise MissingFileError(f"{workdir} has no finished checkpoint in {CHECKPOINTS}/")
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        mngr.item_metadata(step)["state"])
  state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))).state
  return step, state["params"]


def config_from_card(info: dict[str, Any]) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({"encoder": info["encoder"], "model": info["model"]})


@dataclasses.dataclass(frozen=True)
class CheckpointPredictor:
  """images [B, H, W, 3] in [-1, 1] -> LiDB params (leading batch axis), from a trained checkpoint."""
  net: Hypernet
  params: Any
  step: int
  refine_steps: int | None = None

  def __call__(self, images: jax.Array) -> LidbParams:
    return self.net.unpack(self.net.jitted_predict(self.params, self.net.encoder.params, images, self.refine_steps))


def load_predictor(workdir: str, base: BaseModel, refine_steps: int | None = None) -> CheckpointPredictor:
  """A predictor for `base` from a training WORKDIR (its newest checkpoint) or an exported hypernetwork
  directory (hdb_jax.export --hypernet), refused if it was trained for other layers.

  refine_steps overrides the trained number of refinement iterations (e.g. 1 for the k=1 ablation).
  """
  from hdb_jax.export.hypernet import is_exported, load_exported  # pylint: disable=import-outside-toplevel
  info = read_card(workdir)
  layers = [[l.path, l.n, l.m] for l in base.layers]
  check_card(info, {"layers": layers, "base_model": base.source,
                    "lidb": dataclasses.asdict(base.lidb_config)}, workdir)
  check_aux_basis_hash(info.get("aux_hash"), base.layers, base.lidb_config, f"hypernetwork {workdir}",
                       info.get("aux_numpy"))
  net = build_hypernet(config_from_card(info), base)
  step, params = load_exported(workdir) if is_exported(workdir) else latest_params(workdir)
  return CheckpointPredictor(net=net, params=params, step=step, refine_steps=refine_steps)
