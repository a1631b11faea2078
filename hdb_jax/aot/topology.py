"""A TPU topology's devices on any host: libtpu's compile-only devices (no TPU needed).

    target = tpu_target("v5e:2x2")  # 4 compile-only v5e devices, 1 per chip

`libtpu` must be installed (`pip install "jax[tpu]"` of the installed jax's version).
"""

import dataclasses
import os
from typing import Any

from jax.experimental import topologies

from hdb_jax.aot.chips import Chip, chip_of
from hdb_jax.errors import ConfigError, UserError


class TopologyError(UserError):
  """A topology that libtpu cannot describe, or libtpu missing."""


@dataclasses.dataclass(frozen=True)
class Target:
  """A topology's devices and chip. A device is one chip, or one of its cores where the topology
  exposes cores separately (v4 shows 2 per chip), with that share of the chip's memory and peaks."""

  topology: str
  devices: tuple[Any, ...]
  chip: Chip

  @property
  def chips(self) -> int:
    return len({tuple(d.coords) for d in self.devices})

  @property
  def devices_per_chip(self) -> int:
    return len(self.devices) // self.chips

  @property
  def device_hbm_bytes(self) -> int:
    return self.chip.hbm_bytes // self.devices_per_chip

  @property
  def device_peak_flops(self) -> float:
    return self.chip.peak_flops / self.devices_per_chip

  @property
  def device_bandwidth(self) -> float:
    return self.chip.hbm_bandwidth / self.devices_per_chip


def tpu_target(topology: str) -> Target:
  """The compile-only devices of `topology` ('v5e:2x2', 'v4:2x2x1', 'v5p:2x2x1', 'v6e:2x2')."""
  chip = chip_of(topology)
  # Once libtpu is installed every JAX process on the host loads it and one of them holds
  # /tmp/libtpu_lockfile (the guard of a real TPU's single user); compile-only devices run nothing.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  try:
    devices = topologies.get_topology_desc(topology_name=topology, platform="tpu").devices
  except RuntimeError as e:  # no libtpu, or a layout it refuses (JaxRuntimeError)
    if "not installed" in str(e):
      raise TopologyError(
        'compiling for a TPU needs libtpu: pip install "jax[tpu]==<your jax version>"'
      ) from e
    raise TopologyError(f"topology {topology!r}: {str(e).splitlines()[0]}") from e
  if not devices:
    raise ConfigError(f"topology {topology!r} has no devices")
  return Target(topology=topology, devices=tuple(devices), chip=chip)
