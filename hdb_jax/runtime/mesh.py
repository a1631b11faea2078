"""Scale-out: the device mesh, shardings, multi-process start-up and global batches.

One `Mesh(('data', 'fsdp'))`: the batch is split over both axes (each device its own examples);
frozen base weights (`shard_frozen`) and trainables with their optimizer state (`shard_trainable`)
are replicated or, large leaves, split on 'fsdp' along their largest divisible axis. Several
processes (TPU pod hosts, GPU nodes, or local CPU processes in tests) join through
`jax.distributed.initialize` and feed their own slice of every global batch.
"""

import functools
import logging
import os
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hdb_jax.errors import ConfigError

AXES = ("data", "fsdp")
BATCH_AXES = AXES  # the batch dimension is split over every mesh axis


def initialize_distributed(config: ml_collections.ConfigDict) -> None:
  """Joins a multi-process run when one is configured (config.distributed or JAX_* variables).

  Explicit settings: coordinator_address, num_processes, process_id. On Cloud TPU pods and SLURM
  `auto=True` lets JAX discover them. A single process does nothing.
  """
  dist = config.get("distributed") or ml_collections.ConfigDict()
  address = dist.get("coordinator_address") or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
  num_processes = int(dist.get("num_processes") or os.environ.get("JAX_NUM_PROCESSES", 0))
  process_id = dist.get("process_id", -1)
  process_id = (
    int(os.environ.get("JAX_PROCESS_ID", -1))
    if process_id is None or process_id < 0
    else process_id
  )
  if address and num_processes > 1:
    if process_id < 0:
      raise ConfigError(
        "a multi-process run needs a process id (config.distributed.process_id or JAX_PROCESS_ID)"
      )
    logging.info("joining %s as process %d of %d", address, process_id, num_processes)
    jax.distributed.initialize(
      coordinator_address=address, num_processes=num_processes, process_id=process_id
    )
  elif dist.get("auto", False) and _cluster_detected():
    jax.distributed.initialize()


def _cluster_detected() -> bool:
  """A multi-host TPU slice or a multi-task SLURM/MPI job, where JAX finds its peers by itself."""
  env = os.environ
  return (
    len(env.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1
    or int(env.get("SLURM_NTASKS", 1)) > 1
    or int(env.get("OMPI_COMM_WORLD_SIZE", 1)) > 1
  )


def make_mesh(shape: Sequence[int], devices: Sequence[Any] | None = None) -> Mesh:
  """A ('data', 'fsdp') mesh; one -1 in `shape` takes the remaining devices."""
  devices = list(devices if devices is not None else jax.devices())
  shape = [int(s) for s in shape]
  if len(shape) != len(AXES) or shape.count(-1) > 1:
    raise ConfigError(
      f"mesh shape must give {len(AXES)} sizes for {AXES} with at most one -1, got {shape}"
    )
  known = int(np.prod([s for s in shape if s != -1]))
  if -1 in shape:
    if len(devices) % known:
      raise ConfigError(f"mesh {shape}: {len(devices)} devices do not divide by {known}")
    shape[shape.index(-1)] = len(devices) // known
  if int(np.prod(shape)) != len(devices):
    raise ConfigError(f"mesh {shape} needs {int(np.prod(shape))} devices, there are {len(devices)}")
  return Mesh(np.asarray(devices).reshape(shape), AXES)


def traced_on(mesh: Mesh, fn: Callable[..., Any]) -> Callable[..., Any]:
  """fn, traced with `mesh` as the abstract mesh: code that must run per shard (a Pallas kernel:
  models.attention's TPU flash) finds the mesh there. Wrap before jax.jit."""

  @functools.wraps(fn)
  def on_mesh(*args, **kwargs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return fn(*args, **kwargs)

  return on_mesh


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the whole mesh."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def fsdp_shardings(tree: Any, mesh: Mesh, shard: bool, min_size: int = 2**16) -> Any:
  """Shardings for a tree of arrays (weights, optimizer state): replicated, or (shard=True) leaves
  of at least min_size numbers split on 'fsdp' along their largest axis that the 'fsdp' size
  divides."""
  fsdp = mesh.shape["fsdp"]

  def rule(leaf):
    if not shard or fsdp == 1 or leaf.size < min_size:
      return replicated(mesh)
    for axis in sorted(range(leaf.ndim), key=lambda a: -leaf.shape[a]):
      if leaf.shape[axis] % fsdp == 0:
        spec = [None] * leaf.ndim
        spec[axis] = "fsdp"
        return NamedSharding(mesh, PartitionSpec(*spec))
    return replicated(mesh)

  return jax.tree.map(rule, tree)


def global_batch(local: Any, mesh: Mesh) -> Any:
  """This process's slice of a batch (numpy, leading axis) -> global arrays split over the mesh."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local
  )


def per_process_batch(global_size: int) -> int:
  """Examples each process feeds per step (the global batch must divide over processes and
  devices)."""
  processes, devices = jax.process_count(), jax.device_count()
  if global_size % devices:
    raise ConfigError(f"batch_size {global_size} must be a multiple of the {devices} devices")
  return global_size // processes
