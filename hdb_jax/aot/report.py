"""The measurements as a console table and a JSON file."""

import json
from typing import Any, Sequence

from hdb_jax.aot.analysis import Measurement
from hdb_jax.aot.chips import CHIPS
from hdb_jax.io.files import write_text_atomic

COLUMNS = (
  "program",
  "topology",
  "dev",
  "args",
  "out",
  "temp",
  "total/HBM",
  "fits",
  "GFLOP",
  "GB acc",
  "bound ms",
  "throughput",
  "compile s",
)


def _bytes(count: float) -> str:
  for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
    if count >= size:
      return f"{count / size:.1f} {unit}"
  return f"{int(count)} B"


def _row(m: Measurement) -> tuple[str, ...]:
  loop = f" x{m.loop_steps}" if m.loop_steps > 1 else ""
  return (
    m.program,
    m.topology,
    str(m.devices),
    _bytes(m.argument_bytes),
    _bytes(m.output_bytes),
    _bytes(m.temp_bytes),
    f"{_bytes(m.total_bytes)} / {_bytes(m.hbm_bytes)}",
    "yes" if m.fits else "NO",
    f"{m.flops / 1e9:.3g}",
    f"{m.bytes_accessed / 1e9:.3g}",
    f"{m.step_s * 1e3:.3g} ({m.bound[:3]}){loop}",
    f"{m.units_per_s:.4g} {m.unit}/s",
    f"{m.compile_s:.1f}",
  )


def table(measurements: Sequence[Measurement]) -> str:
  """Per program and topology, per device: argument / output / temporary bytes, their total
  against the device's HBM, FLOPs and bytes accessed of one step (one loop iteration), the
  roofline bound of that step (compute- or memory-bound; x N: the loop's iterations per run), the
  throughput it allows and the compile time."""
  rows = [COLUMNS] + [_row(m) for m in measurements]
  widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
  lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
  return "\n".join([lines[0], "  ".join("-" * w for w in widths)] + lines[1:])


def to_json(measurements: Sequence[Measurement], config: str) -> dict[str, Any]:
  chips = {m.chip for m in measurements}
  return {
    "config": config,
    "chips": {
      name: {
        "hbm_bytes": CHIPS[name].hbm_bytes,
        "peak_bf16_flops": CHIPS[name].peak_flops,
        "hbm_bytes_per_s": CHIPS[name].hbm_bandwidth,
        "source": CHIPS[name].source,
      }
      for name in sorted(chips)
    },
    "programs": [m.to_dict() for m in measurements],
  }


def write_json(path: str, measurements: Sequence[Measurement], config: str) -> None:
  write_text_atomic(path, json.dumps(to_json(measurements, config), indent=1))
