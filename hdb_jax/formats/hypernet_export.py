"""A trained hypernetwork without orbax: one safetensors file plus its card, to ship and load
anywhere.

    python -m hdb_jax.export --hypernet=TRAIN_WORKDIR --out=DIR

DIR/hypernet.safetensors: every trained tensor (float32, or float16 with --float16, as a
--release ships it; loaded back as float32), named by its parameter path joined by '/':
  decoder/theta_init [L, P]           the prediction's offset (slots, see below)
  decoder/layer_position [L, d]       learned position of each layer's weight token
  decoder/weights_in [L, P, d]        current weights -> token (iterative refinement input)
  decoder/head_kernel [L, d, P], decoder/head_bias [L, P]   per-layer output heads
  decoder/Dense_0, decoder/LayerNorm_0        image tokens -> d (kernel [hidden, d], bias, scale)
  decoder/block_<i>/...               pre-LN transformer blocks: LayerNorm_0,
                                      MultiHeadDotProductAttention_0 (query/key/value kernel
                                      [d, heads, d/heads], out kernel [heads, d/heads, d]),
                                      LayerNorm_1, Dense_0 [d, mlp], Dense_1 [mlp, d]
  decoder/out_norm                    final LayerNorm of the weight tokens
  encoder/...                         only if the image encoder was trained (else the card names it)
DIR/hypernet.json: the training card (base model, adapted layers, LiDB config, encoder, decoder
  sizes), plus the step, the tensor shapes and `slot_order`: slot l is the l-th layer path in sorted
  order; its first a_l*r entries are A_train [a_l, r] row-major, the next r*b_l are B_train [r,
  b_l], the rest padding.
"""

import json
import os
from typing import Any

import numpy as np
from flax import traverse_util
from safetensors.numpy import load_file, save_file

from hdb_jax.errors import OutputExistsError
from hdb_jax.formats.hypernet_card import read_card
from hdb_jax.formats.train_checkpoint import latest_params
from hdb_jax.io.files import atomic_directory, give_default_mode

TENSORS = "hypernet.safetensors"


def export_hypernet(
  workdir: str, out_dir: str, overwrite: bool = False, dtype: type = np.float32
) -> list[str]:
  """Writes OUT/hypernet.safetensors (tensors as `dtype`) and OUT/hypernet.json from the newest
  checkpoint of a training WORKDIR."""
  info = read_card(workdir)
  step, params = latest_params(workdir)
  if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
    raise OutputExistsError(f"{out_dir} is not empty; pass --overwrite to replace it")
  tensors = {
    "/".join(k): np.ascontiguousarray(np.asarray(v, dtype))
    for k, v in traverse_util.flatten_dict(params).items()
  }
  overflowed = [k for k, v in tensors.items() if not np.isfinite(v).all()]
  if overflowed:
    raise ValueError(
      f"{workdir} step {step}: {', '.join(overflowed[:3])} not finite as {np.dtype(dtype).name}"
    )
  card = {
    **info,
    "step": int(step),
    "dtype": np.dtype(dtype).name,
    "tensors": {k: list(v.shape) for k, v in sorted(tensors.items())},
    "slot_order": sorted(path for path, _, _ in info["layers"]),
  }
  with atomic_directory(out_dir) as tmp:
    save_file(
      tensors, os.path.join(tmp, TENSORS), metadata={"format": info["format"], "step": str(step)}
    )
    give_default_mode(os.path.join(tmp, TENSORS))
    with open(os.path.join(tmp, "hypernet.json"), "w", encoding="utf-8") as f:
      json.dump(card, f, indent=1)
  return [os.path.join(out_dir, TENSORS), os.path.join(out_dir, "hypernet.json")]


def is_exported(directory: str) -> bool:
  return os.path.exists(os.path.join(directory, TENSORS))


def load_exported(directory: str) -> tuple[int, Any]:
  """(step, float32 params pytree) from an exported hypernetwork directory."""
  with open(os.path.join(directory, "hypernet.json"), encoding="utf-8") as f:
    step = int(json.load(f)["step"])
  flat = load_file(os.path.join(directory, TENSORS))
  return step, traverse_util.unflatten_dict(
    {tuple(k.split("/")): v.astype(np.float32) for k, v in flat.items()}
  )
