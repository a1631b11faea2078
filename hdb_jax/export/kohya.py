"""kohya-ss / A1111 LoRA (web UIs, ComfyUI; diffusers' `load_lora_weights` converts it too).

Per layer: `lora_unet_<module with _>.lora_down.weight` = Aᵀ [R, n], `.lora_up.weight` = Bᵀ [m, R],
`.alpha` = R (a 0-d tensor); kohya scales by alpha / R, so the scale is exactly 1. Text-encoder
layers are `lora_te_<module>`.
"""

import json
from typing import Mapping

import numpy as np

from hdb_jax.export.names import kohya_name

Factors = Mapping[str, tuple[np.ndarray, np.ndarray]]  # layer path -> (A [n, R], B [R, m])


def file_name(stem: str) -> str:
  """The kohya file's name in the output directory; web UIs list a LoRA by its file name."""
  return f"{stem}_kohya.safetensors"


def state_dict(factors: Factors) -> dict[str, np.ndarray]:
  """'<kohya name>.lora_down.weight' [R, n], '.lora_up.weight' [m, R], '.alpha' [] = R (float32)."""
  tensors = {}
  for path, (a, b) in sorted(factors.items()):
    name = kohya_name(path)
    tensors[f"{name}.lora_down.weight"] = np.ascontiguousarray(np.asarray(a, np.float32).T)
    tensors[f"{name}.lora_up.weight"] = np.ascontiguousarray(np.asarray(b, np.float32).T)
    tensors[f"{name}.alpha"] = np.asarray(a.shape[1], np.float32)
  return tensors


def safetensors_metadata(factors: Factors, info: Mapping[str, object]) -> dict[str, str]:
  """kohya's own `ss_*` keys that tools read (module, dim, alpha) plus our `info` (base model,
  token)."""
  ranks = sorted({int(a.shape[1]) for a, _ in factors.values()})
  rank = str(ranks[0]) if len(ranks) == 1 else "dynamic"
  return {
    "format": "pt",
    "ss_network_module": "networks.lora",
    "ss_network_dim": rank,
    "ss_network_alpha": rank,
    "hdb_jax.export": json.dumps(dict(info), sort_keys=True),
  }
