"""LoRA and LiDB adapters as pure parameter pytrees, and the two ways to apply them."""

from hdb_jax.adapters.apply import batched_adapters, merge, model_factors, tile_factors
from hdb_jax.adapters.counting import AdapterCount, count_from_configs, count_layers
from hdb_jax.adapters.lidb import (
  AuxBases,
  AuxBasisMismatchError,
  LidbConfig,
  LidbParams,
  aux_bases,
  aux_basis_hash,
  check_aux_basis_hash,
  concat_lidb,
  init_lidb,
  lidb_factors,
  lidb_packer,
  lidb_size,
  relaxed_lidb_config,
)
from hdb_jax.adapters.lora import (
  Factors,
  LoraParams,
  concat_factors,
  delta_weights,
  init_lora,
  lora_factors,
  lora_packer,
  lora_size,
)
from hdb_jax.adapters.packing import Packer
from hdb_jax.adapters.targets import (
  ATTENTION_TARGETS,
  DEFAULT_TARGETS,
  LayerSpec,
  flatten_paths,
  select_layers,
)

__all__ = [
  "batched_adapters",
  "merge",
  "model_factors",
  "tile_factors",
  "AdapterCount",
  "count_from_configs",
  "count_layers",
  "AuxBases",
  "AuxBasisMismatchError",
  "LidbConfig",
  "aux_basis_hash",
  "check_aux_basis_hash",
  "LidbParams",
  "aux_bases",
  "concat_lidb",
  "init_lidb",
  "lidb_factors",
  "lidb_packer",
  "lidb_size",
  "relaxed_lidb_config",
  "Factors",
  "LoraParams",
  "concat_factors",
  "delta_weights",
  "init_lora",
  "lora_factors",
  "lora_packer",
  "lora_size",
  "Packer",
  "ATTENTION_TARGETS",
  "DEFAULT_TARGETS",
  "LayerSpec",
  "flatten_paths",
  "select_layers",
]
