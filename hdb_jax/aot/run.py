"""Compile a config's programs for TPU topologies: the library call behind `python -m hdb_jax.aot`.

measurements = compile_config(config, "hyper", ["v5e:2x2"])
"""

import logging
from typing import Sequence

import ml_collections

from hdb_jax.aot.analysis import Measurement, measure
from hdb_jax.aot.programs import PHASES
from hdb_jax.aot.topology import tpu_target
from hdb_jax.errors import ConfigError
from hdb_jax.runtime.platform import compiling_for


def compile_config(
  config: ml_collections.ConfigDict,
  phase: str,
  topologies: Sequence[str],
  hypernet: ml_collections.ConfigDict | None = None,
  photos: int = 1,
  programs: Sequence[str] = (),
) -> list[Measurement]:
  """Builds `phase`'s programs (a configs/ file's name: lidb, hyper, personalize, world) with
  abstract parameters for each topology's devices and compiles each for it. hypernet (a Phase 1
  config) and photos: Phase 2's hypernetwork and batch of photos. programs: names to keep (all
  when empty)."""
  if phase not in PHASES:
    raise ConfigError(f"no programs for {phase!r}; one of {sorted(PHASES)}")
  extra = {"hypernet": hypernet, "photos": photos} if phase == "personalize" else {}
  measurements = []
  for topology in topologies:
    target = tpu_target(topology)
    with compiling_for("tpu"):
      built = PHASES[phase](config, list(target.devices), **extra)
    for program in built:
      if programs and program.name not in programs:
        continue
      logging.info("compiling %s for %s", program.name, topology)
      measurements.append(measure(program, target))
  return measurements
