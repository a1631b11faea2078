"""Adapter sizes computed from model configs, without materializing weights (jax.eval_shape)."""

import dataclasses
from typing import Any, Sequence

from hdb_jax.adapters.lidb import LidbConfig, lidb_size
from hdb_jax.adapters.lora import lora_size
from hdb_jax.adapters.targets import DEFAULT_TARGETS, LayerSpec, select_layers


@dataclasses.dataclass(frozen=True)
class AdapterCount:
  """How many layers are adapted and how many numbers each adapter kind stores."""

  layers: int
  layers_per_model: dict[str, int]
  lidb_numbers: int
  lora_numbers: int
  lora_rank: int

  @property
  def lidb_bytes_fp32(self) -> int:
    return 4 * self.lidb_numbers

  def table(self) -> str:
    per_model = ", ".join(f"{k} {v}" for k, v in sorted(self.layers_per_model.items()))
    return (
      f"adapted layers      {self.layers} ({per_model})\n"
      f"LiDB numbers        {self.lidb_numbers:,} ({self.lidb_bytes_fp32 / 1000:.1f} KB fp32)\n"
      f"rank-{self.lora_rank} LoRA numbers  {self.lora_numbers:,} "
      f"({4 * self.lora_numbers / 1000:.1f} KB fp32)"
    )


def count_layers(layers: Sequence[LayerSpec], lidb: LidbConfig, lora_rank: int = 1) -> AdapterCount:
  per_model: dict[str, int] = {}
  for layer in layers:
    per_model[layer.model] = per_model.get(layer.model, 0) + 1
  return AdapterCount(
    layers=len(layers),
    layers_per_model=per_model,
    lidb_numbers=lidb_size(layers, lidb),
    lora_numbers=lora_size(layers, lora_rank),
    lora_rank=lora_rank,
  )


def count_from_configs(
  unet_config: dict[str, Any],
  text_config: dict[str, Any],
  patterns: Sequence[str] = DEFAULT_TARGETS,
  lidb: LidbConfig = LidbConfig(),  # noqa: B008  (a frozen dataclass: an immutable default)
  lora_rank: int = 1,
) -> AdapterCount:
  """Counts for a model given by its configs; no weights are created (eval_shape)."""
  from hdb_jax.models import abstract_params

  return count_layers(
    select_layers(abstract_params(unet_config, text_config), patterns), lidb, lora_rank
  )
