"""Compile one program for a TPU target and measure it: memory per device, FLOPs, bytes accessed,
a roofline bound on its step time, and the compile time.

XLA's cost analysis counts a loop's body once, so for a program whose work is a loop (the scanned
finetune, the sampler's denoising loop) the FLOPs and bytes are one iteration's plus what runs once
around the loop; the run's bound is `loop_steps` of those.
"""

import dataclasses
import time
from typing import Any

import jax

from hdb_jax.aot.topology import Target
from hdb_jax.runtime.platform import compiling_for


@dataclasses.dataclass(frozen=True)
class Program:
  """A jitted function and abstract arguments (jax.ShapeDtypeStructs with shardings) to lower it
  with. One run produces `units` `unit` (e.g. 8 images) in `loop_steps` iterations of its loop."""

  name: str
  fn: Any
  args: tuple
  units: int
  unit: str
  loop_steps: int = 1


@dataclasses.dataclass(frozen=True)
class Measurement:
  """One program compiled for one topology. Bytes and FLOPs are per device (the partitioned
  program); step_s is the roofline lower bound max(flops / peak, bytes / bandwidth) of one loop
  iteration, units_per_s the throughput that bound allows."""

  program: str
  topology: str
  chip: str
  devices: int
  argument_bytes: int
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  code_bytes: int
  hbm_bytes: int
  flops: float
  bytes_accessed: float
  compute_s: float
  memory_s: float
  loop_steps: int
  units: int
  unit: str
  compile_s: float

  @property
  def total_bytes(self) -> int:
    """Peak bytes per device: arguments + outputs (less the donated ones they alias) +
    temporaries + code."""
    return (
      self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes + self.code_bytes
    )

  @property
  def fits(self) -> bool:
    return self.total_bytes <= self.hbm_bytes

  @property
  def step_s(self) -> float:
    return max(self.compute_s, self.memory_s)

  @property
  def bound(self) -> str:
    return "compute" if self.compute_s >= self.memory_s else "memory"

  @property
  def units_per_s(self) -> float:
    return self.units / (self.loop_steps * self.step_s) if self.step_s > 0 else float("inf")

  def to_dict(self) -> dict[str, Any]:
    derived = ("total_bytes", "fits", "step_s", "bound", "units_per_s")
    return {**dataclasses.asdict(self), **{name: getattr(self, name) for name in derived}}


def _cost(compiled: Any) -> dict[str, float]:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per partition
    cost = cost[0] if cost else {}
  return dict(cost or {})


def measure(program: Program, target: Target) -> Measurement:
  """Lowers (traced for the TPU) and compiles `program` for `target`; its numbers."""
  start = time.perf_counter()
  with compiling_for("tpu"):
    lowered = program.fn.lower(*program.args)
  # Kept out of a persistent compilation cache: one would store the executable but cannot load it
  # without a TPU client (a warning and a recompile every time), and the compile time is measured.
  min_seconds = jax.config.jax_persistent_cache_min_compile_time_secs
  jax.config.update("jax_persistent_cache_min_compile_time_secs", float("inf"))
  try:
    compiled = lowered.compile()
  finally:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_seconds)
  compile_s = time.perf_counter() - start
  memory, cost = compiled.memory_analysis(), _cost(compiled)
  flops, accessed = float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))
  return Measurement(
    program=program.name,
    topology=target.topology,
    chip=target.chip.name,
    devices=len(program_devices(program) or target.devices),
    argument_bytes=int(memory.argument_size_in_bytes),
    output_bytes=int(memory.output_size_in_bytes),
    alias_bytes=int(memory.alias_size_in_bytes),
    temp_bytes=int(memory.temp_size_in_bytes),
    code_bytes=int(memory.generated_code_size_in_bytes),
    hbm_bytes=target.device_hbm_bytes,
    flops=flops,
    bytes_accessed=accessed,
    compute_s=flops / target.device_peak_flops,
    memory_s=accessed / target.device_bandwidth,
    loop_steps=program.loop_steps,
    units=program.units,
    unit=program.unit,
    compile_s=compile_s,
  )


def program_devices(program: Program) -> set:
  """The devices the program's arguments are placed on."""
  found = set()
  for leaf in jax.tree.leaves(program.args):
    sharding = getattr(leaf, "sharding", None)
    if sharding is not None:
      found |= set(sharding.device_set)
  return found
