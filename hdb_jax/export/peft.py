"""diffusers/PEFT LoRA: `pytorch_lora_weights.safetensors` for `pipe.load_lora_weights(DIR)`.

Per adapted layer, Flax ΔW = A B (A [n, R], B [R, m], y = x W) is PyTorch ΔW = Bᵀ Aᵀ [m, n]
(y = x Wᵀ), so `lora_A.weight` = Aᵀ [R, n] and `lora_B.weight` = Bᵀ [m, R]. PEFT scales by
lora_alpha / r; the file's adapter metadata sets lora_alpha = r, so the scale is exactly 1
(diffusers infers the same, alpha = r, from files without metadata).
"""

import json
from typing import Mapping

import numpy as np

from hdb_jax.export.names import pytorch_module_name

WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # diffusers' LORA_ADAPTER_METADATA_KEY

Factors = Mapping[str, tuple[np.ndarray, np.ndarray]]  # layer path -> (A [n, R], B [R, m])


def uniform_rank(factors: Factors) -> int:
  """The one rank R shared by every layer (an identity has one LiDB rank and one LoRA rank)."""
  ranks = {int(a.shape[1]) for a, _ in factors.values()}
  if len(ranks) != 1:
    raise ValueError(f"layers have different ranks {sorted(ranks)}; a PEFT export needs one rank")
  return ranks.pop()


def file_name(stem: str) -> str:  # pylint: disable=unused-argument
  """diffusers looks for this name in the directory given to load_lora_weights."""
  return WEIGHTS_NAME


def state_dict(factors: Factors) -> dict[str, np.ndarray]:
  """'<model>.<module>.lora_A.weight': Aᵀ [R, n], '<model>.<module>.lora_B.weight': Bᵀ [m, R]
  (float32)."""
  tensors = {}
  for path, (a, b) in sorted(factors.items()):
    model, module = pytorch_module_name(path)
    tensors[f"{model}.{module}.lora_A.weight"] = np.ascontiguousarray(np.asarray(a, np.float32).T)
    tensors[f"{model}.{module}.lora_B.weight"] = np.ascontiguousarray(np.asarray(b, np.float32).T)
  return tensors


def peft_adapter_metadata(factors: Factors) -> dict[str, object]:
  """peft LoraConfig arguments per model, keyed '<model>.<arg>' as diffusers' save_lora_weights
  writes them."""
  rank = uniform_rank(factors)
  modules: dict[str, list[str]] = {}
  for path in sorted(factors):
    model, module = pytorch_module_name(path)
    modules.setdefault(model, []).append(module)
  metadata: dict[str, object] = {}
  for model, names in modules.items():
    config = {
      "r": rank,
      "lora_alpha": rank,
      "target_modules": names,
      "rank_pattern": {},
      "alpha_pattern": {},
    }
    metadata.update({f"{model}.{key}": value for key, value in config.items()})
  return metadata


def safetensors_metadata(factors: Factors, info: Mapping[str, object]) -> dict[str, str]:
  """The header metadata: torch format tag, PEFT adapter config, and our own `info` (base model,
  token)."""
  return {
    "format": "pt",
    ADAPTER_METADATA_KEY: json.dumps(peft_adapter_metadata(factors), indent=2, sort_keys=True),
    "hdb_jax.export": json.dumps(dict(info), sort_keys=True),
  }
