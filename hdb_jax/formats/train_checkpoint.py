"""Orbax training checkpoints (Phase 1, the world pretraining):
WORKDIR/checkpoints/<step>/{state,meta}.

state: the trainable params, optimizer state and step; meta: the data positions of every process
(JSON). A killed run resumes from the newest one; `latest_params` reads the params alone, whatever
mesh or number of processes saved them. Phase 1's card beside them is hypernet_card.
"""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from hdb_jax.errors import MissingFileError

CHECKPOINTS = "checkpoints"


def manager(workdir: str, keep: int = 3, use_async: bool = True) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
    max_to_keep=keep, enable_async_checkpointing=use_async, create=True
  )
  return ocp.CheckpointManager(
    os.path.join(os.path.abspath(workdir), CHECKPOINTS),
    options=options,
    item_names=("state", "meta"),
  )


def save_state(mngr: ocp.CheckpointManager, step: int, state: Any, meta: dict[str, Any]) -> None:
  mngr.save(
    step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
  )


def restore_state(
  mngr: ocp.CheckpointManager, step: int, abstract_state: Any
) -> tuple[Any, dict[str, Any]]:
  """The state (placed like `abstract_state`, ShapeDtypeStructs with shardings) and meta of
  `step`."""
  restored = mngr.restore(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
    ),
  )
  return restored.state, restored.meta


def latest_params(workdir: str) -> tuple[int, Any]:
  """(step, trainable params) of the newest checkpoint in WORKDIR, on this process's first device.

  Works whatever mesh or number of processes saved it (the shapes come from the checkpoint's
  metadata).
  """
  handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
  mngr = ocp.CheckpointManager(
    os.path.join(os.path.abspath(workdir), CHECKPOINTS),
    item_names=("state", "meta"),
    item_handlers=handlers,
  )
  step = mngr.latest_step()
  if step is None:
    raise MissingFileError(f"{workdir} has no finished checkpoint in {CHECKPOINTS}/")
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(
    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
    mngr.item_metadata(step)["state"],
  )
  state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))).state
  return step, state["params"]
