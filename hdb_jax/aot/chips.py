"""TPU chips: memory, peak bf16 compute and memory bandwidth per chip, in one table with sources.

Figures are Google Cloud's per-chip specifications (bf16 peak; float32 matrix products at JAX's
default precision run as single bf16 passes on TPU, so the same peak bounds them):
  v4   https://cloud.google.com/tpu/docs/v4   275 TFLOP/s, 32 GiB HBM2, 1,200 GB/s
  v5e  https://cloud.google.com/tpu/docs/v5e  197 TFLOP/s, 16 GiB HBM2, 819 GB/s
  v5p  https://cloud.google.com/tpu/docs/v5p  459 TFLOP/s, 95 GiB HBM2e, 2,765 GB/s
  v6e  https://cloud.google.com/tpu/docs/v6e  918 TFLOP/s, 32 GiB HBM, 1,640 GB/s
"""

import dataclasses

from hdb_jax.errors import ConfigError

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
  """One TPU chip's HBM (bytes), peak bf16 FLOP/s and HBM bandwidth (bytes/s)."""

  name: str
  hbm_bytes: int
  peak_flops: float
  hbm_bandwidth: float
  source: str


CHIPS = {
  "v4": Chip("v4", 32 * GIB, 275e12, 1.2e12, "https://cloud.google.com/tpu/docs/v4"),
  "v5e": Chip("v5e", 16 * GIB, 197e12, 819e9, "https://cloud.google.com/tpu/docs/v5e"),
  "v5p": Chip("v5p", 95 * GIB, 459e12, 2.765e12, "https://cloud.google.com/tpu/docs/v5p"),
  "v6e": Chip("v6e", 32 * GIB, 918e12, 1.64e12, "https://cloud.google.com/tpu/docs/v6e"),
}


def chip_of(topology: str) -> Chip:
  """The chip of a topology name such as 'v5e:2x2' (the part before the colon)."""
  generation = topology.partition(":")[0].lower()
  if generation not in CHIPS:
    raise ConfigError(
      f"unknown TPU generation {generation!r} in topology {topology!r}; one of {sorted(CHIPS)} "
      "(e.g. v5e:2x2, v4:2x2x1)"
    )
  return CHIPS[generation]
